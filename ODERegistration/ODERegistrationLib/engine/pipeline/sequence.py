"""A cine sequence: the labels drawn on one phase carried to every phase, with their volumes and ejection fraction
(cardiac_volumes.py; the cine and its labels as read: cine.py).

Every phase is registered from the reference phase directly (the reference is the moving image, the phase the
fixed one, so the reference labels are propagated onto each phase's grid). The labelled slices of every phase are
stacked into one batch, inside the region around the labels: each slice of each phase gets its in-plane map, all in
one 2-D batch. With a through-plane σ (off in the ``sequence`` preset: it costs minutes, docs/benchmarks.md), each
phase's stack first gets its own smooth through-plane map (through_plane.py), all phases in one 3-D batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from ..parameters import RegistrationParameters
from ..progress import CancelCheck, ProgressCallback, RegistrationCancelled
from .cardiac_volumes import against_experts, cardiac_cycle
from .cine import Cine, on_grid, time_warnings
from .metrics import folding
from .region import region_from_corners
from .registration import RegistrationResult, register_images
from .validation import InputError


@dataclass
class SequenceResult:
    forward: List[sitk.Image]
    """Per phase, the displacement field (LPS mm) that resamples the reference phase onto that phase."""
    backward: List[sitk.Image]
    """Per phase, the field that resamples the phase onto the reference phase."""
    labels: List[sitk.Image]
    """Per phase, the reference labels propagated onto it (the reference phase keeps its own)."""
    volumes_ml: Dict[int, List[float]]
    """Per label, its volume at every phase."""
    report: Dict = field(default_factory=dict)


def _plane_to_frame(points: Sequence[Sequence[float]], frame: sitk.Image) -> List[Tuple[float, ...]]:
    """2-D physical points in the plane of a 2-D + time cine (as its 2-D label maps give them) as 3-D points of
    its one-slice phase ``frame``."""
    plane = frame[:, :, 0]
    return [frame.TransformContinuousIndexToPhysicalPoint(plane.TransformPhysicalPointToContinuousIndex(
        [float(value) for value in point]) + (0.0,)) for point in points]


def register_sequence(cine: Cine, labels: sitk.Image, reference_phase: int,
                      parameters: RegistrationParameters = RegistrationParameters(),
                      progress: ProgressCallback = None, cancel: CancelCheck = None,
                      names: Optional[Dict[str, str]] = None,
                      expert_labels: Optional[List[sitk.Image]] = None,
                      region_corners: Optional[Sequence[Sequence[float]]] = None) -> SequenceResult:
    """Register the reference phase onto every other phase, all labelled slices of all phases in one batch.

    ``expert_labels`` (one label map per phase, 0 where a frame was not contoured) adds Dice / HD95 on every
    contoured frame and the expert's volumes to the report.
    """
    names = {"cine": "cine", "labels": "labels", **(names or {})}
    if parameters.mode == "3d":  # the mode is set to slices below: say so rather than run something else
        raise InputError("mode 3d: a sequence is registered slice by slice (mode auto or slices); "
                         "--through-plane-sigma-mm adds a smooth 3-D map across the slices")
    reference = cine.phases[reference_phase]
    label_array = sitk.GetArrayFromImage(labels)
    labelled = [k for k in range(label_array.shape[0]) if label_array[k].any()]
    slices = list(range(labelled[0], labelled[-1] + 1))  # with any unlabelled slice between: a stack of anatomy
    others = [t for t in range(len(cine.phases)) if t != reference_phase]
    stack = lambda arrays: slices_as_one_stack(np.concatenate(arrays), reference)
    fixed = stack([sitk.GetArrayFromImage(cine.phases[t])[slices] for t in others])
    moving = stack([sitk.GetArrayFromImage(reference)[slices]] * len(others))
    moving_labels = stack([label_array[slices]] * len(others))
    if region_corners is not None:  # the box's in-plane extent, across every slice of the stack
        if cine.time_axis_in_input == 2 and len(region_corners[0]) == 2:  # 2-D corners in the frames' plane
            region_corners = _plane_to_frame(region_corners, reference)
        box = region_from_corners(region_corners, reference, "--roi box")
        size = fixed.GetSize()
        region_corners = [fixed.TransformIndexToPhysicalPoint(corner) for corner in
                          ((box.start[2], box.start[1], 0), (box.stop[2] - 1, box.stop[1] - 1, size[2] - 1))]
    result = register_images(fixed, moving, parameters.replace(mode="slices"), moving_labels=moving_labels,
                             progress=progress, cancel=cancel, region_corners=region_corners, stacks=len(others),
                             names={"fixed": names["cine"], "moving": f"{names['cine']} phase {reference_phase}",
                                    "moving_labels": names["labels"]})

    per_phase = split_batch(result, len(others), slices, reference, label_array, cancel)
    forward, backward, propagated, phase_reports = ([None] * len(cine.phases) for _ in range(4))
    zero = np.zeros(label_array.shape + (3,))
    forward[reference_phase] = backward[reference_phase] = on_grid(zero, reference, vector=True)
    propagated[reference_phase] = labels
    phase_reports[reference_phase] = {"phase": reference_phase, "reference": True}
    for t, (phase_forward, phase_backward, phase_labels, report) in zip(others, per_phase):
        forward[t], backward[t], propagated[t] = phase_forward, phase_backward, phase_labels
        phase_reports[t] = {"phase": t, **report,
                            "seconds": round(result.report["seconds"] / len(others), 3)}  # its share of the batch

    values = [int(v) for v in np.unique(label_array) if v != 0]
    voxel_ml = float(np.prod(reference.GetSpacing())) / 1000.0
    volumes = {v: [float((sitk.GetArrayViewFromImage(image) == v).sum() * voxel_ml) for image in propagated]
               for v in values}
    seconds = result.report["seconds"]
    cycle, label_volumes = cardiac_cycle(volumes)
    report = {
        "phases": len(cine.phases), "reference_phase": reference_phase, "labelled_slices": slices,
        "times_ms": cine.times_ms, "seconds": seconds, "seconds_per_phase": round(seconds / len(others), 3),
        "batch": {key: result.report[key] for key in ("iterations", "device", "mode", "through_plane", "region",
                                                       "similarity")},
        "warnings": time_warnings(cine, names["cine"]) + result.report["warnings"],
        "folded_voxels": int(sum(r.get("folded_voxels", 0) for r in phase_reports)),
        "per_phase": phase_reports,
        "cycle": cycle,
        "labels": label_volumes,
        "parameters": parameters.replace(threads=result.report["parameters"]["threads"]).as_dict(),
        "versions": result.report["versions"],
    }
    if expert_labels is not None:
        report["expert"] = against_experts(propagated, expert_labels, values, voxel_ml)
    return SequenceResult(forward, backward, propagated, volumes, report)


def slices_as_one_stack(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """Slices of several phases as one stack on the reference's geometry (the slice positions are not physical,
    which the slice-by-slice layout never uses)."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(reference.GetSpacing())
    image.SetOrigin(reference.GetOrigin())
    image.SetDirection(reference.GetDirection())
    return image


def split_batch(result: RegistrationResult, phases: int, slices: Sequence[int], reference: sitk.Image,
           label_array: np.ndarray, cancel: CancelCheck = None):
    """Per registered phase: forward, backward and labels on the phase grid (identity and no label on the slices
    the reference labels do not reach), and its folding, min det J and mean round trip; ``cancel`` is checked
    before each phase."""
    arrays = [sitk.GetArrayFromImage(image) for image in (result.forward, result.backward, result.warped_labels)]
    determinant = sitk.GetArrayFromImage(result.jacobian)  # like the round trip, computed by register_images
    inverse_determinant = sitk.GetArrayFromImage(result.inverse_jacobian)
    count = len(slices)
    for p in range(phases):
        if cancel is not None and cancel():
            raise RegistrationCancelled(f"cancelled while splitting the phases ({p} of {phases} done)")
        rows = slice(p * count, (p + 1) * count)
        fields = []
        for array in arrays[:2]:
            full = np.zeros(label_array.shape + (3,))
            full[slices] = array[rows]
            fields.append(on_grid(full, reference, vector=True))
        labels = np.zeros_like(label_array)
        labels[slices] = arrays[2][rows]
        forward_folds, inverse_folds = folding(determinant[rows]), folding(inverse_determinant[rows])
        report = {"folded_voxels": forward_folds.folded_voxels, "min_jacobian": forward_folds.min_jacobian,
                  "inverse_folded_voxels": inverse_folds.folded_voxels,
                  "inverse_consistency_mm": float(result.round_trip_mm[rows].mean())}
        yield fields[0], fields[1], on_grid(labels.astype(label_array.dtype), reference), report


