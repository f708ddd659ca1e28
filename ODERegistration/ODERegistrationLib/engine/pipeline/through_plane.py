"""Thick-slice stacks: a smooth 3-D map for the through-plane motion first, then one 2-D map per slice.

A slice of a cine stack does not hold the same tissue at end-diastole and end-systole: the base descends towards
the apex, and the basal and apical slices show anatomy that was in the neighbouring slice. One 2-D map per slice
can only shrink what it sees, so the propagated labels linger on those slices. A 3-D map of the whole stack, its
velocity smoothed over ``through_plane_sigma_mm``, follows that motion; the slices are then registered in-plane on
the moving stack resampled through it, at their full in-plane detail. The result is the composition

    D_F = T_F ∘ S_F (each fixed voxel goes in-plane first, then through the 3-D map),
    D_B = S_B ∘ T_B,

both on the stack's grid. A strongly smoothed T keeps both compositions free of folds, which two sharp maps
composed across 10 mm slices are not: the backward one evaluates the slices' maps between slices, and with T
smoothed over 10 mm it still folded on an ACDC stack, over 15 mm on the Sunnybrook stack, over 20 mm (the
default) or 30 mm on none (docs/benchmarks.md).
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import numpy as np
import torch

from ..core.fields import compose, warp
from ..core.optimizer import FieldPair, optimize_fields
from ..parameters import RegistrationParameters
from ..progress import CancelCheck, ProgressCallback
from .layout import TensorLayout

MIN_SLICES = 4
"""The 3-D map needs at least this many voxels along every axis (the pyramid and the net's 3-D convolutions)."""


def fits_through_plane(layout: TensorLayout, parameters: RegistrationParameters, in_region: bool) -> bool:
    """Whether this region of a stack gets the 3-D through-plane map first: only a region around the anatomy
    (``in_region``), since over a whole field of view the smooth map follows the thorax, not the heart, and lost
    Dice on four of the five benchmark stacks (docs/benchmarks.md)."""
    return (in_region and layout.mode == "slices" and parameters.through_plane_sigma_mm > 0
            and min(layout.stack_shape) >= MIN_SLICES)


def fit_through_plane_then_slices(fixed: np.ndarray, moving: np.ndarray,
                                  masks: Optional[Tuple[np.ndarray, np.ndarray]], slices: TensorLayout,
                                  parameters: RegistrationParameters, device: torch.device,
                                  progress: ProgressCallback = None,
                                  cancel: CancelCheck = None) -> Tuple[FieldPair, TensorLayout]:
    """Fit T on the stack as a volume, then the slices on moving ∘ T; returns the composed maps and the volume
    layout they are expressed in. ``fixed`` / ``moving`` are the stack's arrays, intensities in [0, 1]."""
    volume = TensorLayout("3d", slices.array_shape, slices.array_spacing, stacks=slices.stacks)
    planned = parameters.iterations_3d + parameters.iterations
    fixed_volume, moving_volume = volume.to_tensor(fixed, device), volume.to_tensor(moving, device)
    volume_masks = None if masks is None else tuple(volume.to_tensor(mask, device) for mask in masks)
    through = optimize_fields(fixed_volume, moving_volume, volume.spacing,
                              parameters.replace(smoothing_sigma_mm=parameters.through_plane_sigma_mm),
                              _stage_progress(progress, 0, planned), cancel, volume_masks)

    def resampled_slices(volume_tensor: torch.Tensor) -> torch.Tensor:
        """A volume tensor resampled through T, as the slices' batch."""
        return slices.to_tensor(warp(volume_tensor, through.forward)[:, 0].reshape(volume.array_shape), device)

    slice_masks = None
    if masks is not None:
        slice_masks = (slices.to_tensor(masks[0], device), resampled_slices(volume_masks[1]))
    done = through.iterations_run
    in_plane = optimize_fields(slices.to_tensor(fixed, device), resampled_slices(moving_volume), slices.spacing,
                               parameters, _stage_progress(progress, done, done + parameters.iterations), cancel,
                               slice_masks)
    in_plane_forward, in_plane_backward = (
        volume.from_voxel_displacement(slices.to_voxel_displacement(field), device)
        for field in (in_plane.forward, in_plane.backward))
    composed = dataclasses.replace(in_plane, forward=compose(through.forward, in_plane_forward),
                                   backward=compose(in_plane_backward, through.backward), earlier=through)
    return composed, volume


def _stage_progress(progress: ProgressCallback, done: int, total: int) -> ProgressCallback:
    """Report one stage's iterations as part of both stages' count."""
    if progress is None:
        return None
    return lambda report: progress(dataclasses.replace(report, iteration=done + report.iteration, iterations=total))
