"""How an image array becomes the optimizer's tensor, and how the optimizer's fields come back as voxel vectors.

Three layouts:

- ``2d``: a 2-D image, or a 3-D image one voxel thick (every 2-D image in Slicer), one (1, 1, H, W) problem;
- ``3d``: a volume, one (1, 1, D, H, W) problem;
- ``slices``: a thick-slice stack, one 2-D problem per slice, batched as (S, 1, H, W); these maps have no
  through-plane displacement (through_plane.py fits a smooth 3-D map of the stack before them for that).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np
import torch

from ..core.fields import normalized_to_voxels, voxels_to_normalized
from .validation import InputError

THICK_SLICE_RATIO = 3.0
"""``auto`` chooses slices when one axis' spacing is at least this many times the finest."""


@dataclass(frozen=True)
class TensorLayout:
    mode: str
    array_shape: Tuple[int, ...]
    """Shape of the image array, (k, j, i) or (j, i)."""
    array_spacing: Tuple[float, ...]
    """Spacing along the array axes."""
    slice_axis: int | None = None
    """Array axis that runs across slices, in slices mode (and the one-voxel axis of a single slice)."""
    stacks: int = 1
    """How many stacks of equal depth the array holds one after another along its first axis (a cine's phases in
    one batch): in 3-D each is its own volume of the batch, so no map or resampling runs from one into the next."""

    @property
    def stack_shape(self) -> Tuple[int, ...]:
        """Shape of one stack's array."""
        return (self.array_shape[0] // self.stacks,) + tuple(self.array_shape[1:])

    @property
    def spacing(self) -> Tuple[float, ...]:
        """Spacing of the tensor's spatial axes."""
        if self.slice_axis is None:
            return self.array_spacing
        return tuple(s for axis, s in enumerate(self.array_spacing) if axis != self.slice_axis)

    def cropped(self, shape: Sequence[int]) -> "TensorLayout":
        """The same layout for a box of the image."""
        return dataclasses.replace(self, array_shape=tuple(int(n) for n in shape))

    def to_tensor(self, array: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
        """An image array (numpy, or a tensor already on the device) as the optimizer's (B, 1, *spatial) batch."""
        tensor = torch.as_tensor(np.ascontiguousarray(array) if isinstance(array, np.ndarray) else array,
                                 dtype=torch.float32, device=device)
        if self.slice_axis is None:
            return tensor.reshape((self.stacks, 1) + self.stack_shape)
        return torch.movedim(tensor, self.slice_axis, 0).unsqueeze(1).contiguous()

    def to_voxel_displacement(self, field: torch.Tensor) -> np.ndarray:
        """Normalized field (B, d, *spatial) -> voxel displacement of shape (*array_shape, dim), components (i, j[, k])."""
        voxels = normalized_to_voxels(field).detach().cpu().double()
        vectors = torch.movedim(voxels, 1, -1).numpy()
        if self.slice_axis is None:
            return np.ascontiguousarray(vectors.reshape(self.array_shape + vectors.shape[-1:]))
        dim = len(self.array_shape)
        in_plane_array_axes = [axis for axis in range(dim) if axis != self.slice_axis]
        full = np.zeros((vectors.shape[0],) + vectors.shape[1:-1] + (dim,))
        for channel, array_axis in enumerate(reversed(in_plane_array_axes)):
            full[..., dim - 1 - array_axis] = vectors[..., channel]
        return np.ascontiguousarray(np.moveaxis(full, 0, self.slice_axis))


    def from_voxel_displacement(self, vectors: np.ndarray, device: torch.device) -> torch.Tensor:
        """Inverse of :meth:`to_voxel_displacement`: voxel vectors (*array_shape, dim) -> normalized field."""
        dim = len(self.array_shape)
        if self.slice_axis is None:
            channels = vectors
        else:
            in_plane = [axis for axis in range(dim) if axis != self.slice_axis]
            channels = np.moveaxis(vectors, self.slice_axis, 0)[..., [dim - 1 - axis for axis in reversed(in_plane)]]
        if self.slice_axis is None:
            channels = channels.reshape((self.stacks,) + self.stack_shape + channels.shape[-1:])
        field = torch.movedim(torch.from_numpy(np.ascontiguousarray(channels, dtype=np.float32)), -1, 1).to(device)
        return voxels_to_normalized(field)


def choose_layout(mode: str, array_shape: Sequence[int], array_spacing: Sequence[float]) -> TensorLayout:
    """Resolve ``auto`` and check that the requested mode fits the image's dimension."""
    shape, spacing = tuple(int(n) for n in array_shape), tuple(float(s) for s in array_spacing)
    dim = len(shape)
    if dim == 2:
        if mode not in ("auto", "2d"):
            raise InputError(f"mode {mode} needs a 3-D volume, but the images are 2-D; use mode 2d or auto")
        return TensorLayout("2d", shape, spacing)
    thinnest = min(range(dim), key=lambda axis: (shape[axis], -spacing[axis]))
    if shape[thinnest] == 1 and mode in ("auto", "2d", "slices"):  # one slice, as Slicer holds every 2-D image
        return TensorLayout("2d", shape, spacing, thinnest)
    if mode == "2d":
        raise InputError("mode 2d needs 2-D images or a single slice, but the images are 3-D volumes; use slices "
                         "for a thick-slice stack")
    thickest = max(range(dim), key=lambda axis: (spacing[axis], -axis))
    slice_axis = thinnest if shape[thinnest] < 4 else thickest
    is_stack = shape[thinnest] < 4 or spacing[thickest] >= THICK_SLICE_RATIO * min(spacing)
    if mode == "slices" or (mode == "auto" and is_stack):
        return TensorLayout("slices", shape, spacing, slice_axis)
    if min(shape) < 4:
        raise InputError(f"mode 3d needs at least 4 voxels along every axis, not {shape}; use slices")
    return TensorLayout("3d", shape, spacing)
