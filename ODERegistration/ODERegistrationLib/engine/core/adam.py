"""Adam (Kingma and Ba, 2015), the paper's optimizer, computed as torch.optim.Adam computes it, without torch.optim.

Making a torch.optim optimizer imports torch.compile's machinery (torch._dynamo) the first time in a process:
1.3 to 1.7 s on the 2-core CPU, about a fifth of a 2-D registration, paid again by every command-line run. The
update below is torch.optim.Adam's one tensor at a time (its path on the CPU), bit for bit (tested against it).

An optional linear warm-up scales the rate by step / warmup_steps over the first steps: the bias correction makes
Adam's first step exactly lr * sign(gradient) for every weight, a jump of the full rate in a direction no gradient
has confirmed yet.
"""
from __future__ import annotations

from typing import Iterable, Tuple

import torch


class Adam:
    """Adam without weight decay or AMSGrad: what the method needs, with torch.optim.Adam's defaults; with
    ``warmup_steps`` > 0, torch.optim.Adam under a LambdaLR scheduler of min(1, step / warmup_steps)."""

    def __init__(self, parameters: Iterable[torch.Tensor], lr: float, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, warmup_steps: int = 0) -> None:
        self.parameters = list(parameters)
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.warmup_steps = warmup_steps
        self.steps = 0
        self.first_moments = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.parameters]
        self.second_moments = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.parameters]

    def zero_grad(self) -> None:
        for parameter in self.parameters:
            parameter.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        lr = self.lr * min(1.0, self.steps / self.warmup_steps) if self.warmup_steps else self.lr
        step_size = lr / (1 - self.beta1 ** self.steps)
        second_correction = (1 - self.beta2 ** self.steps) ** 0.5
        for parameter, first, second in zip(self.parameters, self.first_moments, self.second_moments):
            if parameter.grad is None:
                continue
            gradient = parameter.grad
            first.lerp_(gradient, 1 - self.beta1)
            second.mul_(self.beta2).addcmul_(gradient, gradient, value=1 - self.beta2)
            parameter.addcdiv_(first, (second.sqrt() / second_correction).add_(self.eps), value=-step_size)
