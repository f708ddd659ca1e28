"""Loss terms: image similarity (MI, SSIM, MSE, from MONAI where it has them) and field regularizers."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from monai.losses import GlobalMutualInformationLoss

from .fields import gaussian_smooth

Similarity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

SSIM_SIGMA = 1.5
"""Gaussian window of SSIM (Wang et al. 2004), in voxels."""


def ssim_loss(warped: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean SSIM with a Gaussian window, for images in [0, 1].

    The five local statistics are blurred in one separable pass, which in 3-D is several times cheaper than the
    full 7x7x7 or 11x11x11 kernel of a non-separable implementation.
    """
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    stacked = torch.cat([warped, target, warped * warped, target * target, warped * target], dim=1)
    mu_x, mu_y, xx, yy, xy = gaussian_smooth(stacked, [SSIM_SIGMA] * (warped.dim() - 2)).unbind(dim=1)
    var_x, var_y, cov = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))
    return 1.0 - ssim.mean()


def similarity_loss(name: str) -> Similarity:
    """Dissimilarity of two images in [0, 1] of shape (B, 1, *shape), averaged over the batch; lower is better."""
    if name == "mse":
        return lambda warped, target: torch.mean((warped - target) ** 2)
    terms: list[Similarity] = []
    if "mi" in name.split("+"):
        terms.append(GlobalMutualInformationLoss())
    if "ssim" in name.split("+"):
        terms.append(ssim_loss)
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
