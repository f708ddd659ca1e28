"""Loss terms: image similarity (MI, SSIM, MSE, from MONAI where it has them) and field regularizers."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from monai.losses import GlobalMutualInformationLoss, SSIMLoss

Similarity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _ssim(dim: int, shape: Sequence[int]) -> Similarity:
    """SSIM loss with the largest odd window (11 in 2-D, 7 in 3-D for cost) that fits the grid."""
    window = min([11 if dim == 2 else 7] + [n if n % 2 else n - 1 for n in shape])
    loss = SSIMLoss(spatial_dims=dim, data_range=1.0, win_size=max(window, 3))
    return loss


def similarity_loss(name: str, dim: int, shape: Sequence[int]) -> Similarity:
    """Dissimilarity of two images in [0, 1] of shape (B, 1, *shape), averaged over the batch; lower is better."""
    if name == "mse":
        return lambda warped, target: torch.mean((warped - target) ** 2)
    terms: list[Similarity] = []
    if "mi" in name.split("+"):
        terms.append(GlobalMutualInformationLoss())
    if "ssim" in name.split("+"):
        terms.append(_ssim(dim, shape))
    if not terms:
        raise ValueError(f"unknown similarity {name!r}")
    return lambda warped, target: sum(term(warped, target) for term in terms)


def physical_weights(shape: Sequence[int], spacing: Sequence[float], device: torch.device) -> torch.Tensor:
    """Per-channel factors turning normalized displacement into a common physical scale.

    One normalized unit spans (n - 1) * spacing / 2 millimetres, which differs between axes; dividing by the largest
    extent keeps the published weights for a square, isotropic image (all factors 1).
    """
    extents = [(n - 1) * s for n, s in zip(shape, spacing)]
    largest = max(extents)
    weights = [e / largest for e in reversed(extents)]
    return torch.tensor(weights, device=device).reshape(1, -1, *([1] * len(shape)))


def mean_squared_displacement(displacement: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean of |u|^2 on the physical scale.

    Serves both regularizers: ||D - x||^2 (u = D's displacement) and inverse consistency (u = displacement of
    D_B ∘ D_F, which is zero for a perfect inverse).
    """
    return torch.mean((displacement * weights) ** 2)
