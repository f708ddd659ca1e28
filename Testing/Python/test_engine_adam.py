"""The engine's Adam is torch.optim.Adam's update, without torch.optim's one-off import of torch._dynamo."""
import subprocess
import sys

import pytest
import torch

from ODERegistrationLib.engine.core.adam import Adam
from ODERegistrationLib.engine.core.network import VelocityNet


def fitted_weights(make_optimizer, learning_rate: float, steps: int = 30, make_scheduler=None):
    """The net's weights after ``steps`` steps on a loss with gradients of every size and sign."""
    torch.manual_seed(0)
    net = VelocityNet(2, fields=3).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(net.parameters(), learning_rate)
    scheduler = make_scheduler(optimizer) if make_scheduler else None
    grids, coarser = torch.randn(2, 2, 16, 16), torch.randn(6, 2, 16, 16)
    for _ in range(steps):
        optimizer.zero_grad()
        (net(grids, coarser) ** 2).mean().backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return [parameter.detach().clone() for parameter in net.parameters()]


@pytest.mark.parametrize("learning_rate", [5e-4, 3e-2])
def test_adam_steps_are_torch_optim_adams_bit_for_bit(learning_rate):
    ours = fitted_weights(lambda parameters, lr: Adam(parameters, lr=lr), learning_rate)
    theirs = fitted_weights(lambda parameters, lr: torch.optim.Adam(parameters, lr=lr), learning_rate)
    start = fitted_weights(lambda parameters, lr: Adam(parameters, lr=0.0), learning_rate)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert not all(torch.equal(a, b) for a, b in zip(ours, start))  # the steps moved the weights


@pytest.mark.parametrize("warmup", [1, 10, 50])
def test_the_warm_up_is_torch_optim_adam_under_a_linear_warm_up_schedule(warmup):
    """30 steps cover the ramp (10), stop inside it (50), or take the full rate at once (1)."""
    ours = fitted_weights(lambda parameters, lr: Adam(parameters, lr=lr, warmup_steps=warmup), 3e-2)
    theirs = fitted_weights(lambda parameters, lr: torch.optim.Adam(parameters, lr=lr), 3e-2, make_scheduler=lambda
                            optimizer: torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: min(1.0, (e + 1) / warmup)))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_the_first_warm_up_step_moves_no_weight_by_more_than_its_share_of_the_rate():
    start = fitted_weights(lambda parameters, lr: Adam(parameters, lr=lr), 3e-2, steps=0)
    first = fitted_weights(lambda parameters, lr: Adam(parameters, lr=lr, warmup_steps=30), 3e-2, steps=1)
    largest = max(float((a - b).abs().max()) for a, b in zip(first, start))
    assert 0.9e-3 < largest <= 1e-3 * (1 + 1e-4)  # 3e-2 / 30: Adam's first step is the rate times the sign


def test_a_registration_does_not_import_torch_compiles_machinery():
    """torch.optim imports torch._dynamo when its first optimizer is made: 1.3 s of every command-line run."""
    script = ("import sys, torch\n"
              "from ODERegistrationLib.engine.core.optimizer import optimize_fields\n"
              "from ODERegistrationLib.engine import RegistrationParameters\n"
              "image = torch.rand(1, 1, 32, 32)\n"
              "optimize_fields(image, image.roll(2, -1), (1.0, 1.0), RegistrationParameters(iterations=2))\n"
              "print('torch._dynamo' in sys.modules)\n")
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False"


def test_the_registration_takes_its_warm_up_from_the_parameters():
    """Over the first iterations of a long warm-up the nets barely move; at the full rate they do."""
    from ODERegistrationLib.engine import RegistrationParameters
    from ODERegistrationLib.engine.core.optimizer import optimize_fields

    torch.manual_seed(0)
    image = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 48, 48), 5, 1, 2)
    moved = {}
    for warmup in (0, 10000):
        parameters = RegistrationParameters(iterations=5, warmup_iterations=warmup, similarity="mse")
        fields = optimize_fields(image, image.roll(3, -1), (1.0, 1.0), parameters)
        moved[warmup] = float(fields.forward.abs().max())
    assert moved[10000] < 0.01 * moved[0]
