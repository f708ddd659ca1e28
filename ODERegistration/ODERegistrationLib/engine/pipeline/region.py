"""Region of interest: the box of the fixed grid where the map is fitted, and the map's continuation outside it.

Registering the box around the anatomy rather than the whole field of view spends the net's grid and the
similarity on what the clinician looks at (docs/benchmarks.md measures both). Every output still lives on the
whole fixed grid: inside the box the fitted displacement, outside it the displacement of the nearest box voxel,
faded to zero by a raised cosine of the distance to the box. The fade is long enough (at least pi times the
largest displacement on the box's border) that its slope times the displacement stays below 1/2, so the
continuation cannot fold.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from .validation import InputError

MIN_REGION_VOXELS = 4
"""A region is at least this many voxels along every axis (or the whole axis): the least a 3-D registration takes."""
INSIDE_TOLERANCE = 1e-3
"""A voxel belongs to a box when its centre lies inside, give or take this fraction of a voxel (rounding)."""
MIN_FADE_MM = 10.0
"""Shortest distance over which the displacement fades to zero outside the region."""


@dataclass(frozen=True)
class Region:
    """A box of the fixed grid, in array order (k, j, i) like numpy's view of a SimpleITK image."""

    start: Tuple[int, ...]
    stop: Tuple[int, ...]
    """One past the last voxel, per array axis."""
    source: str
    """What placed it: 'whole image', 'moving labels', 'fixed mask', 'moving mask' or 'box'."""
    margin_mm: float = 0.0

    @property
    def slices(self) -> Tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))

    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(b - a for a, b in zip(self.start, self.stop))

    def is_whole(self, shape: Sequence[int]) -> bool:
        return all(a == 0 for a in self.start) and tuple(self.stop) == tuple(shape)

    def describe(self, reference: sitk.Image) -> Dict:
        """For report.json: the box in voxels (ITK index order i, j[, k]) and in physical LPS millimetres."""
        first, last = list(self.start[::-1]), [b - 1 for b in self.stop[::-1]]
        corners = [reference.TransformContinuousIndexToPhysicalPoint([float(c) for c in corner])
                   for corner in itertools.product(*zip(first, last))]
        return {"source": self.source, "margin_mm": self.margin_mm, "index_start": first,
                "index_size": list(self.shape[::-1]),
                "physical_lower_mm": np.min(corners, axis=0).round(3).tolist(),
                "physical_upper_mm": np.max(corners, axis=0).round(3).tolist()}


def whole_region(shape: Sequence[int]) -> Region:
    return Region(tuple(0 for _ in shape), tuple(int(n) for n in shape), "whole image")


def region_around_mask(mask: sitk.Image, reference: sitk.Image, margin_mm: float, source: str) -> Region:
    """The box of the fixed grid (``reference``) that holds every nonzero voxel of ``mask`` (on any grid), plus a
    margin in millimetres."""
    array = sitk.GetArrayViewFromImage(mask)
    nonzero = np.nonzero(array)
    if nonzero[0].size == 0:
        raise InputError(f"{source}: is empty (no nonzero voxel), so no region can be placed around it")
    first = [int(axis.min()) - 0.5 for axis in nonzero[::-1]]  # voxel edges, ITK index order
    last = [int(axis.max()) + 0.5 for axis in nonzero[::-1]]
    corners = [mask.TransformContinuousIndexToPhysicalPoint(corner) for corner in itertools.product(*zip(first, last))]
    return _box_on_grid(corners, reference, margin_mm, source)


def box_corners(lower_mm: Sequence[float], upper_mm: Sequence[float]) -> list:
    """The 2**dim corners of an axis-aligned box given by two opposite corners."""
    return [list(corner) for corner in itertools.product(*zip(lower_mm, upper_mm))]


def region_from_corners(corners: Sequence[Sequence[float]], reference: sitk.Image, name: str = "region box") -> Region:
    """The box of the fixed grid that covers the given physical points (LPS mm), for example the eight corners of a
    rotated box such as a Slicer ROI."""
    dim = reference.GetDimension()
    if len(corners) < 2:
        raise InputError(f"{name}: needs at least two {dim}-D points")
    other = next((len(corner) for corner in corners if len(corner) != dim), None)
    if other is not None:
        raise InputError(f"{name}: needs {dim}-D corners ({2 * dim} numbers for a box) for a {dim}-D image, "
                         f"not {other}-D ones")
    if not all(math.isfinite(v) for corner in corners for v in corner):
        raise InputError(f"{name}: corners must be finite numbers")
    return _box_on_grid(corners, reference, 0.0, "box", name)


def _box_on_grid(corners, reference: sitk.Image, margin_mm: float, source: str, name: Optional[str] = None) -> Region:
    indices = np.array([reference.TransformPhysicalPointToContinuousIndex([float(c) for c in corner])
                        for corner in corners])
    spacing, size = np.array(reference.GetSpacing()), np.array(reference.GetSize())
    lower = np.ceil(indices.min(axis=0) - margin_mm / spacing - INSIDE_TOLERANCE)
    upper = np.floor(indices.max(axis=0) + margin_mm / spacing + INSIDE_TOLERANCE)
    if np.any(upper < 0) or np.any(lower > size - 1):  # compared as floats: a far box's voxels overflow an int
        raise InputError(f"{name or source}: the region misses the image (voxels [{_voxels(lower)}] to "
                         f"[{_voxels(upper)}] of an image of size {size.tolist()})")
    low = np.maximum(lower, 0).astype(int)
    high = np.minimum(upper, size - 1).astype(int) + 1
    for axis in range(len(size)):  # grow a thin box around its centre to the minimum size, inside the image
        need = min(MIN_REGION_VOXELS, size[axis])
        if high[axis] - low[axis] < need:
            low[axis] = min(max((low[axis] + high[axis] - need) // 2, 0), size[axis] - need)
            high[axis] = low[axis] + need
    return Region(tuple(int(v) for v in low[::-1]), tuple(int(v) for v in high[::-1]), source, margin_mm)


def _voxels(indices: np.ndarray) -> str:
    return ", ".join(f"{round(value)}" if abs(value) < 1e9 else f"{value:.3g}" for value in indices)


def embed_displacement(inside: np.ndarray, region: Region, shape: Sequence[int],
                       spacing: Sequence[float]) -> Tuple[np.ndarray, float]:
    """A displacement fitted in ``region`` (array ``region.shape + (dim,)``, voxel units, components i, j[, k]) on
    the whole grid ``shape`` (array order, ``spacing`` likewise): the nearest box voxel's displacement, faded to
    zero outside. Returns the field and the fade length in millimetres."""
    if region.is_whole(shape):
        return inside, 0.0
    nearest = np.ix_(*[np.clip(np.arange(n), a, b - 1) - a for n, a, b in zip(shape, region.start, region.stop)])
    field = inside[nearest]
    outside_mm = [np.maximum(np.maximum(a - np.arange(n), np.arange(n) - (b - 1)), 0) * s
                  for n, a, b, s in zip(shape, region.start, region.stop, spacing)]
    distance = np.sqrt(sum(np.reshape(d, [-1 if axis == i else 1 for i in range(len(shape))]) ** 2
                           for axis, d in enumerate(outside_mm)))
    millimetres = np.linalg.norm(inside * np.asarray(spacing[::-1]), axis=-1)
    border = np.zeros(region.shape, bool)
    for axis in range(len(shape)):
        border[(slice(None),) * axis + (0,)] = border[(slice(None),) * axis + (-1,)] = True
    fade_mm = max(MIN_FADE_MM, math.pi * float(millimetres[border].max()))
    weight = 0.5 * (1.0 + np.cos(np.pi * np.minimum(distance / fade_mm, 1.0)))
    return field * weight[..., None], fade_mm
