"""Displacement-field algebra in normalized coordinates: identity grid, warp, compose, exp, upsample.

Conventions used everywhere in the engine:

- A field is a tensor of shape (B, dim, *spatial) holding a *displacement* u in normalized coordinates
  ([-1, 1] along every axis, ``align_corners=True``), the map being x -> x + u(x).
- Its channels are ordered like ``grid_sample`` wants them, (x, y[, z]), that is, the *last* spatial axis first.
- Because coordinates are normalized, a field means the same thing at every pyramid level, so moving a field to
  another level is plain interpolation.
"""
from __future__ import annotations

import functools
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F


def identity_grid(shape: Sequence[int], device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalized coordinates of every voxel centre, shape (1, dim, *shape), channels (x, y[, z]).

    Cached (the last 8 shapes): every warp needs one, and building it costs as much as a warp in 3-D. Never modify
    it in place.
    """
    return _cached_identity_grid(tuple(int(n) for n in shape), torch.device(device), dtype)


def clear_identity_grid_cache() -> None:
    """Free the cached grids (full-resolution ones can be large, on the GPU too) once a registration is done."""
    _cached_identity_grid.cache_clear()


@functools.lru_cache(maxsize=8)
def _cached_identity_grid(shape: tuple, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    axes = [torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype) for n in shape]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(mesh[::-1], dim=0).unsqueeze(0)


def warp(image: torch.Tensor, displacement: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Resample ``image`` at x + u(x): warped(x) = image(x + u(x)), borders replicated."""
    spatial = displacement.shape[2:]
    grid = identity_grid(spatial, displacement.device, displacement.dtype) + displacement
    grid = torch.movedim(grid, 1, -1)
    return F.grid_sample(image, grid, mode=mode, padding_mode="border", align_corners=True)


def compose(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """Displacement of outer ∘ inner: x -> inner(x) -> outer(inner(x))."""
    return inner + warp(outer, inner)


def exponentiate(velocity: torch.Tensor, steps: int = 7) -> torch.Tensor:
    """exp of a stationary velocity field by scaling and squaring: a diffeomorphism for a smooth velocity."""
    displacement = velocity / (2**steps)
    for _ in range(steps):
        displacement = compose(displacement, displacement)
    return displacement


def resize_field(displacement: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Move a field (or an image) to another grid size, linearly, corners fixed (``align_corners``); a
    displacement needs no rescaling in normalized coordinates."""
    if tuple(displacement.shape[2:]) == tuple(shape):
        return displacement
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    return F.interpolate(displacement, size=tuple(shape), mode=mode, align_corners=True)


def gaussian_smooth(tensor: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """Separable Gaussian smoothing with per-axis sigma in voxels (0 skips the axis); borders replicated."""
    dim = tensor.dim() - 2
    conv = F.conv2d if dim == 2 else F.conv3d
    channels = tensor.shape[1]
    for axis, sigma in enumerate(sigmas):
        if sigma <= 0:
            continue
        # 3 sigma, but at most twice the axis' length: a wider kernel only spreads the replicated border further,
        # and a sigma of millions of voxels (a spacing far from millimetres) would not fit in memory
        radius = max(1, min(int(round(3.0 * sigma)), 2 * tensor.shape[2 + axis]))
        weight = _gaussian_kernel(float(sigma), radius, dim, axis, channels, tensor.device, tensor.dtype)
        padding = [0, 0] * dim
        padding[2 * (dim - 1 - axis)] = padding[2 * (dim - 1 - axis) + 1] = radius
        tensor = conv(F.pad(tensor, padding, mode="replicate"), weight, groups=channels)
    return tensor


@functools.lru_cache(maxsize=32)
def _gaussian_kernel(sigma: float, radius: int, dim: int, axis: int, channels: int, device: torch.device,
                     dtype: torch.dtype) -> torch.Tensor:
    """One axis' kernel of :func:`gaussian_smooth`, (channels, 1, 1.., 2 radius + 1, ..1). Cached: the optimizer
    smooths with the same few kernels at every iteration, and building one costs as much as using it. Never modify
    it in place."""
    offsets = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    kernel_shape = [1] * dim
    kernel_shape[axis] = kernel.numel()
    return kernel.reshape(1, 1, *kernel_shape).repeat(channels, 1, *([1] * dim))


def normalized_to_voxels(displacement: torch.Tensor) -> torch.Tensor:
    """Normalized displacement (channels x, y[, z]) to voxel units in the same channel order."""
    return displacement * _voxels_per_unit(displacement)


def voxels_to_normalized(displacement: torch.Tensor) -> torch.Tensor:
    """Voxel displacement (channels x, y[, z]) to normalized units."""
    return displacement / _voxels_per_unit(displacement)


def _voxels_per_unit(displacement: torch.Tensor) -> torch.Tensor:
    spatial = displacement.shape[2:]
    scale = [max(n - 1, 1) / 2.0 for n in reversed(spatial)]
    return torch.tensor(scale, device=displacement.device, dtype=displacement.dtype).reshape(1, -1, *([1] * len(spatial)))


def jacobian_determinant(displacement: torch.Tensor) -> torch.Tensor:
    """det of the Jacobian of x -> x + u(x) by central differences, shape (B, *spatial).

    Computed in normalized coordinates, where it equals the physical one (the axis scalings cancel in the
    determinant). Differentiable, for the folding guard; metrics.py measures the written fields in millimetres.
    """
    dim = displacement.dim() - 2
    spatial = displacement.shape[2:]
    matrix = [[None] * dim for _ in range(dim)]
    for channel in range(dim):
        along_axes = torch.gradient(displacement[:, channel], dim=tuple(range(1, dim + 1)))
        for column in range(dim):
            axis = dim - 1 - column
            matrix[channel][column] = along_axes[axis] * ((spatial[axis] - 1) / 2.0) + float(column == channel)
    if dim == 2:
        return matrix[0][0] * matrix[1][1] - matrix[0][1] * matrix[1][0]
    (a, b, c), (d, e, f), (g, h, i) = matrix
    return a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)


def refine_inverse(displacement: torch.Tensor, inverse: torch.Tensor, steps: int = 20) -> torch.Tensor:
    """Make ``inverse`` (B, dim, *spatial) the inverse of x -> x + u(x) by fixed-point iteration v(y) = -u(y + v(y))
    (Chen et al., Med. Phys. 2008), damped by 1/2 so that it also converges where the map stretches up to threefold.

    Where a map stretches far more than the grid resolves, its exact inverse compresses too fast for the grid and
    folds there. For a batch element whose refined inverse folds, the candidates are also: the refined inverse with
    its folds smoothed away (:func:`smooth_folds`), and the refined inverse fading into the given one around its
    folded voxels, over each of :data:`FALLBACK_RADII`. Each element keeps, among the candidates that fold no more
    voxels than the given inverse, the one with the smallest residual |u(y + v(y)) + v(y)|, if it is smaller than
    the given inverse's; else the given one.
    """
    refined = inverse
    for _ in range(steps):
        refined = 0.5 * (refined - warp(displacement, refined))

    given_folds, best_residual = _folds_and_residual(displacement, inverse)
    best = inverse.clone()

    def consider(candidate: torch.Tensor, elements: torch.Tensor, folded: Optional[torch.Tensor] = None) -> None:
        folds, residual = _folds_and_residual(displacement[elements], candidate, folded)
        better = (folds <= given_folds[elements]) & (residual < best_residual[elements])
        best[elements[better]] = candidate[better]
        best_residual[elements[better]] = residual[better]

    folded = _folded_voxels(refined)
    consider(refined, torch.arange(len(inverse), device=inverse.device), folded)
    folding = folded.flatten(1).any(dim=1).nonzero().flatten()
    if len(folding):
        consider(smooth_folds(refined[folding]), folding)
        for radius in FALLBACK_RADII:
            weight = _fade_around(folded[folding], radius)
            consider(weight * inverse[folding] + (1 - weight) * refined[folding], folding)
    return best


def _folds_and_residual(displacement: torch.Tensor, inverse: torch.Tensor,
                        folded: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per batch element: the inverse's folded voxels (from ``folded``, its fold mask, when already known), and its
    mean residual |u(y + v(y)) + v(y)|."""
    folds = (_folded_voxels(inverse) if folded is None else folded).flatten(1).sum(dim=1)
    residual = compose(displacement, inverse).norm(dim=1).flatten(1).mean(dim=1)
    return folds, residual


FALLBACK_RADII = (2, 4, 8, 16)
"""Radii (voxels) of the neighbourhood of the refined inverse's folds where a candidate of :func:`refine_inverse`
falls back to the given inverse."""
SMOOTHING_RADII = FALLBACK_RADII + (32,)
"""Radii (voxels) of the neighbourhood of a map's folds that :func:`smooth_folds` smooths, tried in turn: the last
for a map fitted at half the resolution of a small crop (a cine's end-systolic phase, compressed more than 16
voxels of smoothing undo)."""


def smooth_folds(displacement: torch.Tensor) -> torch.Tensor:
    """The map with its folds (det J <= 0) smoothed away, the rest of it unchanged.

    A map fitted on a coarser grid can fold in a few voxels once upsampled and written, where it compresses most.
    Around those voxels, each batch element's displacement fades into its own Gaussian-smoothed copy (smoothing
    lowers the compression), over the smallest radius that leaves no fold; an element that still folds at the
    largest radius keeps that attempt, and the report counts what is left.
    """
    folded = _folded_voxels(displacement)
    pending = folded.flatten(1).any(dim=1).nonzero().flatten()  # only the elements that fold are smoothed
    if len(pending) == 0:
        return displacement
    chosen = displacement.clone()
    for radius in SMOOTHING_RADII:
        if len(pending) == 0:
            break
        field = displacement[pending]
        weight = _fade_around(folded[pending], radius)
        smoothed = gaussian_smooth(field, [radius / 2.0] * (field.dim() - 2))
        candidate = weight * smoothed + (1 - weight) * field
        chosen[pending] = candidate
        pending = pending[_folded_voxels(candidate).flatten(1).any(dim=1)]
    return chosen


def _folded_voxels(displacement: torch.Tensor) -> torch.Tensor:
    """1 where the map folds (det J <= 0), else 0, shape (B, 1, *spatial) in the field's dtype."""
    return (jacobian_determinant(displacement) <= 0).unsqueeze(1).to(displacement.dtype)


def _fade_around(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """1 within ``radius`` voxels of the mask's voxels, fading smoothly to 0 over about as far again."""
    dim = mask.dim() - 2
    pool = F.max_pool2d if dim == 2 else F.max_pool3d
    grown = mask
    for axis in range(dim):  # separable: a cube's max along one axis at a time
        kernel = [1] * dim
        kernel[axis] = 2 * radius + 1
        padding = [0] * dim
        padding[axis] = radius
        grown = pool(grown, kernel, stride=1, padding=padding)
    return torch.clamp(2.0 * gaussian_smooth(grown, [radius / 2.0] * dim), max=1.0)
