"""Loss terms: image similarity (MI, SSIM, LNCC, MSE), optionally weighted by a mask, and the field regularizers.

Every similarity takes an optional ``weight`` of shape (B, 1, *spatial) in [0, 1]: voxels of weight 0 do not count
(outside a user's mask, or where the moving image has no data). ``None`` weighs every voxel alike.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .fields import gaussian_smooth, jacobian_determinant

Similarity = Callable[[torch.Tensor, torch.Tensor, Optional[torch.Tensor]], torch.Tensor]

SSIM_SIGMA = 1.5
"""Gaussian window of SSIM (Wang et al. 2004), in voxels."""


def weighted_mean(values: torch.Tensor, weight: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean of a per-voxel map (B, *spatial) or (B, 1, *spatial) over each image, then over the batch."""
    values = values.reshape(values.shape[0], -1)
    if weight is None:
        return values.mean()
    weight = weight.reshape(weight.shape[0], -1)
    return ((values * weight).sum(dim=1) / weight.sum(dim=1).clamp_min(1e-6)).mean()


def ssim_loss(warped: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None,
              target_statistics: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
    """1 - mean SSIM with a Gaussian window, for images in [0, 1].

    The local statistics are blurred in one separable pass, which in 3-D is several times cheaper than the full
    7x7x7 or 11x11x11 kernel of a non-separable implementation. ``target_statistics``, the target's local mean and
    mean square (:func:`ssim_target_statistics`), may be given when they are already known (:class:`SSIM`).
    """
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    if target_statistics is None:
        target_statistics = ssim_target_statistics(target)
    mu_y, yy = target_statistics
    stacked = torch.cat([warped, warped * warped, warped * target], dim=1)
    mu_x, xx, xy = gaussian_smooth(stacked, [SSIM_SIGMA] * (warped.dim() - 2)).unbind(dim=1)
    var_x, var_y, cov = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))
    return 1.0 - weighted_mean(ssim, weight)


def ssim_target_statistics(target: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The target's local mean and local mean square in SSIM's window, each (B, *spatial)."""
    mu_y, yy = gaussian_smooth(torch.cat([target, target * target], dim=1), [SSIM_SIGMA] * (target.dim() - 2)).unbind(1)
    return mu_y, yy


LNCC_EPSILON = 1e-8
"""Keeps LNCC finite in flat windows. The local variances are window means of intensities in [0, 1] (texture:
~1e-3 to 1e-2), so their product is ~1e-6 or more where there is structure; flat noise stays below the epsilon."""


def lncc_loss(warped: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None, *,
              window: int) -> torch.Tensor:
    """1 - mean squared local normalized cross-correlation (ANTs' CC metric, VoxelMorph's NCC) in a box window of
    ``window`` voxels a side (odd).

    Insensitive to a local linear change of contrast, which suits intra-modality pairs such as cine frames.
    """
    dim = warped.dim() - 2
    pool = F.avg_pool2d if dim == 2 else F.avg_pool3d

    def window_means(tensor: torch.Tensor) -> torch.Tensor:
        """Means over the windows clipped at the border: zero-padded sums over padded counts (3-D pooling refuses
        an axis shorter than the window, as a stack of a few slices has, even with padding). The box is
        separable, one axis at a time: 3 x 7 instead of 7^3 additions per voxel in 3-D."""
        for axis in range(dim):
            kernel = [1] * dim
            kernel[axis] = window
            padding = [0] * (2 * dim)
            padding[2 * (dim - 1 - axis)] = padding[2 * (dim - 1 - axis) + 1] = window // 2
            tensor = pool(F.pad(tensor, padding), kernel, stride=1)
        return tensor

    stacked = torch.cat([warped, target, warped * warped, target * target, warped * target], dim=1)
    counts = window_means(torch.ones_like(warped[:1, :1]))
    mu_x, mu_y, xx, yy, xy = (window_means(stacked) / counts).unbind(dim=1)
    cov, var_x, var_y = xy - mu_x * mu_y, (xx - mu_x * mu_x).clamp_min(0), (yy - mu_y * mu_y).clamp_min(0)
    cc = cov * cov / (var_x * var_y + LNCC_EPSILON)
    return 1.0 - weighted_mean(cc, weight)


MI_BINS = 16
MI_MAX_SAMPLES = 200_000
"""Above this many voxels per image, MI uses a fixed random subset of them (as ITK's Mattes MI samples), which
bounds its memory: each sampled voxel holds a row of weights over the bins for the backward pass."""


def mutual_information_loss(warped: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None,
                            bins: int = MI_BINS, samples: Optional[torch.Tensor] = None,
                            target_parzen: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Negative mutual information of images in [0, 1], averaged over the batch.

    The joint histogram uses cubic B-spline Parzen windows (as Mattes MI in ITK), which keep the gradient smooth in
    the intensities. Each voxel has 4 nonzero weights per image; the histogram is one batched product of the two
    (voxels x bins) weight matrices, a few large operations instead of 16 scatter-adds of every voxel, and cheaper
    than a Gaussian window over every bin (MONAI's GlobalMutualInformationLoss). ``target_parzen``, the target's
    (sampled) weight matrix (:func:`mi_target_weights`), may be given when it is already known
    (:class:`MutualInformation`).
    """
    batch = warped.shape[0]
    warped = _voxel_rows(warped, samples)
    weight = torch.ones_like(warped) if weight is None else _voxel_rows(weight, samples)
    if target_parzen is None:
        target_parzen = mi_target_weights(target, bins, samples)
    joint = torch.bmm(_cubic_parzen(warped, bins, weight).transpose(1, 2), target_parzen)
    joint = joint / weight.sum(dim=1).clamp_min(1e-6).reshape(batch, 1, 1)
    marginals = joint.sum(dim=2, keepdim=True) * joint.sum(dim=1, keepdim=True)
    eps = 1e-10
    information = (joint * (torch.log(joint + eps) - torch.log(marginals + eps))).sum(dim=(1, 2))
    return -information.mean()


def mi_target_weights(target: torch.Tensor, bins: int = MI_BINS,
                      samples: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The target's Parzen weight matrix for :func:`mutual_information_loss`, (B, voxels or samples, bins)."""
    return _cubic_parzen(_voxel_rows(target, samples), bins)


def _voxel_rows(image: torch.Tensor, samples: Optional[torch.Tensor]) -> torch.Tensor:
    """(B, 1, *spatial) as one row of voxels per image, (B, N), only the sampled voxels when given."""
    rows = image.reshape(image.shape[0], -1)
    return rows if samples is None else rows[:, samples]


class _KeepsTargetTerms:
    """A similarity whose terms of the target alone are computed once per target tensor.

    An optimizer compares every iteration's warped images with the same targets, so what depends on the target only
    is kept while the same tensor comes back and nothing differentiates through it.
    """

    def __init__(self) -> None:
        self._target: Optional[torch.Tensor] = None
        self._terms = None

    def _target_terms(self, target: torch.Tensor):
        if target.requires_grad:
            return self._compute(target)
        if target is not self._target:
            self._target, self._terms = target, self._compute(target)
        return self._terms

    def _compute(self, target: torch.Tensor):
        raise NotImplementedError


class MutualInformation(_KeepsTargetTerms):
    """:func:`mutual_information_loss` over a fixed voxel sample, keeping the target's Parzen weight matrix (voxels
    x bins, the size of the warped one)."""

    def __init__(self, samples: Optional[torch.Tensor] = None) -> None:
        super().__init__()
        self.samples = samples

    def _compute(self, target: torch.Tensor) -> torch.Tensor:
        return mi_target_weights(target, MI_BINS, self.samples)

    def __call__(self, warped: torch.Tensor, target: torch.Tensor,
                 weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        return mutual_information_loss(warped, target, weight, samples=self.samples,
                                       target_parzen=self._target_terms(target))


class SSIM(_KeepsTargetTerms):
    """:func:`ssim_loss`, keeping the target's local mean and mean square."""

    def _compute(self, target: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return ssim_target_statistics(target)

    def __call__(self, warped: torch.Tensor, target: torch.Tensor,
                 weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        return ssim_loss(warped, target, weight, target_statistics=self._target_terms(target))


def _cubic_parzen(values: torch.Tensor, bins: int, scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Cubic B-spline weights of each value of (B, N) over the bins, (B, N, bins): 4 consecutive nonzero per value,
    each value's multiplied by its ``scale`` (B, N) when given.

    NaN is mapped to 0 first: a bin index must never leave the histogram, whatever reaches it (a NaN cast to long is
    an arbitrary integer).
    """
    position = 1.0 + torch.nan_to_num(values, nan=0.0).clamp(0.0, 1.0) * (bins - 3)
    first = position.detach().floor().clamp(max=bins - 3)
    u = position - first
    weights = torch.stack(((1 - u) ** 3 / 6, (3 * u ** 3 - 6 * u ** 2 + 4) / 6,
                           (-3 * u ** 3 + 3 * u ** 2 + 3 * u + 1) / 6, u ** 3 / 6), dim=2)
    if scale is not None:
        weights = weights * scale.unsqueeze(2)
    index = (first.long() - 1).unsqueeze(2) + torch.arange(4, device=values.device)
    return torch.zeros(*values.shape, bins, device=values.device, dtype=values.dtype).scatter_(2, index, weights)


def similarity_loss(name: str, voxels: int, device: torch.device, seed: int = 0, *,
                    lncc_window: int) -> Similarity:
    """Dissimilarity of two images in [0, 1] of shape (B, 1, *shape), averaged over the batch; lower is better.

    ``voxels`` is the number of voxels per image, to choose MI's sample (fixed for the whole run, so the loss is
    deterministic and smooth from one iteration to the next); ``lncc_window`` is LNCC's window.
    """
    if name == "mse":
        return lambda warped, target, weight=None: weighted_mean((warped - target) ** 2, weight)
    if name == "lncc":
        return functools.partial(lncc_loss, window=lncc_window)
    terms: list[Similarity] = []
    if "mi" in name.split("+"):
        samples = None
        if voxels > MI_MAX_SAMPLES:
            generator = torch.Generator().manual_seed(seed)
            samples = torch.randperm(voxels, generator=generator)[:MI_MAX_SAMPLES].to(device)
        terms.append(MutualInformation(samples))
    if "ssim" in name.split("+"):
        terms.append(SSIM())
    if not terms:
        raise ValueError(f"unknown similarity {name!r}")
    return lambda warped, target, weight=None: sum(term(warped, target, weight) for term in terms)


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


FOLDING_MARGIN = 0.1
"""The folding guard acts where det J falls below this (a tenfold local compression), before it reaches 0."""


def folding_penalty(displacement: torch.Tensor) -> torch.Tensor:
    """Mean of max(0, margin - det J): zero for any plausible deformation, it pushes back only where a strongly
    compressing map would fold once discretized (interpolated composition is not exactly diffeomorphic)."""
    return torch.relu(FOLDING_MARGIN - jacobian_determinant(displacement)).mean()
