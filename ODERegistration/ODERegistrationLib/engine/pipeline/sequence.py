"""A cine sequence: the labels drawn on one phase carried to every phase, with volumes and ejection fraction.

Every phase is registered from the reference phase directly (the reference is the moving image, the phase the
fixed one, so the reference labels are propagated onto each phase's grid). The labelled slices of every phase are
stacked into one batch, inside the region around the labels: each slice of each phase gets its in-plane map, all in
one 2-D batch. With a through-plane σ (off in the ``sequence`` preset: it costs minutes, docs/benchmarks.md), each
phase's stack first gets its own smooth through-plane map (through_plane.py), all phases in one 3-D batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from ..parameters import RegistrationParameters
from ..progress import CancelCheck, ProgressCallback, RegistrationCancelled
from .metrics import folding, label_scores
from .region import region_from_corners
from .registration import RegistrationResult, register_images
from .validation import InputError, check_image, check_labels, same_grid


@dataclass
class Cine:
    """The phases of a sequence as 3-D volumes (a 2-D + time image gives one-slice volumes) and their times."""

    phases: List[sitk.Image]
    times_ms: Optional[List[float]]
    """None when the file gives no time step (:data:`UNKNOWN_STEP`): the outputs then count phases, not ms."""
    time_axis_in_input: int
    """3 for a 4-D input, 2 for a 3-D one read as 2-D + time: outputs are written in the input's layout."""
    time_axis: Optional[Tuple[float, float]] = None
    """The file's own origin and spacing along its time axis, as read, for writing the outputs in its layout; None
    for frames that did not come from one file (a Slicer sequence)."""


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


def read_cine(image: sitk.Image, time_axis: bool, name: str) -> Cine:
    """A 4-D image (x, y, slice, phase), or with ``time_axis`` a 3-D one (x, y, phase); every phase checked."""
    return check_cine(split_phases(image, time_axis, name), name)


def check_cine(cine: Cine, name: str) -> Cine:
    """At least two phases, each a usable image on the first phase's grid (a Slicer sequence's frames may differ)."""
    if len(cine.phases) < 2:
        raise InputError(f"{name}: has a single phase; a sequence needs at least two")
    first = cine.phases[0]
    for t, phase in enumerate(cine.phases):
        check_image(phase, f"{name} phase {t}")
        if not same_grid(phase, first):
            raise InputError(f"{name} phase {t}: lies on another grid than phase 0 (size, spacing, origin or "
                             "direction); the phases of a cine share one grid")
    return cine


def split_phases(image: sitk.Image, time_axis: bool, name: str) -> Cine:
    """The phases of a 4-D image, or of a 3-D one read as 2-D + time, as 3-D volumes (images or label maps)."""
    dimension = image.GetDimension()
    if dimension == 4 and time_axis:
        raise InputError(f"{name}: is 4-D (x, y, slice, phase); --time-axis is for a 3-D cine (x, y, phase), "
                         "leave it out")
    if dimension == 4:
        phases = [image[:, :, :, t] for t in range(image.GetSize()[3])]
    elif dimension == 3 and time_axis:
        phases = [_frame_of_2d_cine(image, t) for t in range(image.GetSize()[2])]
    elif dimension == 3:
        raise InputError(f"{name}: is 3-D; give --time-axis to read its last axis as the phases of a 2-D cine, or "
                         "a 4-D image (x, y, slice, phase)")
    else:
        raise InputError(f"{name}: a cine is a 4-D image (x, y, slice, phase) or, with --time-axis, a 3-D one; "
                         f"this one is {dimension}-D")
    axis = dimension - 1
    return Cine(phases, phase_times_ms(image, axis, len(phases)), axis,
                (image.GetOrigin()[axis], image.GetSpacing()[axis]))


UNKNOWN_STEP = 1.0
"""The time step ITK reads where a file gives none (a NIfTI pixdim of 0, or a format's default spacing). No cine has
phases 1 ms or 1 s apart, so a step below it is in seconds, above it in ms, and this one is no time at all."""

MILLISECONDS = ("ms", "msec", "millisecond", "milliseconds")
SECONDS = ("", "s", "sec", "second", "seconds")
"""Units under which a time may be held in seconds or, as ITK writes a cine, in ms: the step decides."""


def phase_times_ms(image: sitk.Image, axis: int, count: int) -> Optional[List[float]]:
    """The phases' times in ms along ``axis`` of an image as ITK reads it (in seconds, or in ms under a 'sec'
    unit: :func:`times_in_ms`)."""
    origin, step = image.GetOrigin()[axis], image.GetSpacing()[axis]
    return times_in_ms([origin + t * step for t in range(count)], "s")


def times_in_ms(times: Sequence[float], unit: str) -> Optional[List[float]]:
    """Phase times in ms, or None when they are no times (:data:`UNKNOWN_STEP` apart, or in another unit).

    The unit alone does not tell: ITK reads a NIfTI time axis in seconds when its header says msec or usec, and
    converters such as dcm2niix write seconds, while ITK writes its spacing as it is under a 'sec' unit (the
    development cine holds ms so, and Slicer loads it as a sequence indexed 0, 40, 80 ... 's'). Under a unit of
    seconds the mean step decides: below :data:`UNKNOWN_STEP` seconds, above it ms. A unit of ms is taken as it is.
    """
    unit = unit.strip().lower()
    if unit in MILLISECONDS:
        return [float(time) for time in times]
    if unit not in SECONDS or len(times) < 2:
        return None
    step = (times[-1] - times[0]) / (len(times) - 1)
    if math.isclose(step, UNKNOWN_STEP, rel_tol=1e-9):  # the times as origin + t * step, rounded
        return None
    scale = 1000.0 if abs(step) < UNKNOWN_STEP else 1.0
    return [scale * time for time in times]


def time_warnings(cine: Cine, name: str) -> List[str]:
    """A cine without times: its outputs count phases instead of ms, and say so."""
    if cine.times_ms is not None:
        return []
    return [f"{name}: gives no time step between its phases (none in its header, read as 1, or an index that is "
            "not a time), so the volumes and the volume curve count phases, not ms"]


def _frame_of_2d_cine(image: sitk.Image, t: int) -> sitk.Image:
    """Phase ``t`` of a 2-D + time image as a one-slice volume, 1 mm thick, at the image's own origin and
    orientation: its third axis is time, so every phase lies in the first one's plane (cut as 2-D, the phases of an
    oblique image would each get another origin and a projected, non-orthogonal orientation)."""
    frame = image[:, :, t:t + 1]
    frame.SetOrigin(image.GetOrigin())
    frame.SetSpacing(image.GetSpacing()[:2] + (1.0,))
    return frame


def _plane_to_frame(points: Sequence[Sequence[float]], frame: sitk.Image) -> List[Tuple[float, ...]]:
    """2-D physical points in the plane of a 2-D + time cine (as its 2-D label maps give them) as 3-D points of
    its one-slice phase ``frame``."""
    plane = frame[:, :, 0]
    return [frame.TransformContinuousIndexToPhysicalPoint(plane.TransformPhysicalPointToContinuousIndex(
        [float(value) for value in point]) + (0.0,)) for point in points]


def reference_labels(labels: sitk.Image, cine: Cine, reference_phase: int, name: str) -> sitk.Image:
    """The labels on the reference phase's grid: a label map of one phase, or a sequence of them (then the
    reference phase's)."""
    if not 0 <= reference_phase < len(cine.phases):
        raise InputError(f"reference phase {reference_phase}: out of range; the cine has phases 0 to "
                         f"{len(cine.phases) - 1}")
    reference = cine.phases[reference_phase]
    sequence = []
    if labels.GetDimension() == cine.time_axis_in_input + 1:
        if labels.GetSize()[cine.time_axis_in_input] != len(cine.phases):
            raise InputError(f"{name}: has {labels.GetSize()[cine.time_axis_in_input]} phases, the cine "
                             f"{len(cine.phases)}")
        sequence = split_phases(labels, cine.time_axis_in_input == 2, name).phases
        labels = sequence[reference_phase]
    elif labels.GetDimension() == 2 and reference.GetSize()[2] == 1:  # a 2-D map in the plane of one-slice frames
        check_labels(labels, reference[:, :, 0], name, f"the cine's phase {reference_phase}")
        labels = _on_grid(sitk.GetArrayFromImage(labels)[None], reference)
    array = check_labels(labels, reference, name, f"the cine's phase {reference_phase}")
    if not array.any():
        labelled_phases = [str(k) for k, phase in enumerate(sequence) if sitk.GetArrayViewFromImage(phase).any()]
        where = (f"; its labels are on phase {', '.join(labelled_phases)}: is that the reference phase?"
                 if labelled_phases else "")
        raise InputError(f"{name}: has no label on phase {reference_phase} (every voxel is 0){where}")
    return labels


def expert_phases(labels: sitk.Image, cine: Cine, name: str, propagated: sitk.Image) -> List[sitk.Image]:
    """A label sequence like the cine, one label map per phase on that phase's grid, holding at least one value
    of the ``propagated`` reference labels (each label is compared with the same value)."""
    phases = split_phases(labels, cine.time_axis_in_input == 2, name).phases
    if len(phases) != len(cine.phases):
        raise InputError(f"{name}: has {len(phases)} phases, the cine {len(cine.phases)}")
    values = set()
    for t, (label_map, phase) in enumerate(zip(phases, cine.phases)):
        values.update(np.unique(check_labels(label_map, phase, f"{name} phase {t}", f"the cine's phase {t}")).tolist())
    wanted = set(np.unique(sitk.GetArrayViewFromImage(propagated)).tolist()) - {0}
    if not wanted & values:
        raise InputError(f"{name}: holds none of the propagated labels' values "
                         f"({', '.join(map(str, sorted(wanted)))}); each label is compared with the same value")
    return phases


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
    stack = lambda arrays: _stack_image(np.concatenate(arrays), reference)
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

    per_phase = _split(result, len(others), slices, reference, label_array, cancel)
    forward, backward, propagated, phase_reports = ([None] * len(cine.phases) for _ in range(4))
    zero = np.zeros(label_array.shape + (3,))
    forward[reference_phase] = backward[reference_phase] = _on_grid(zero, reference, vector=True)
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


def _stack_image(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """Slices of several phases as one stack on the reference's geometry (the slice positions are not physical,
    which the slice-by-slice layout never uses)."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(reference.GetSpacing())
    image.SetOrigin(reference.GetOrigin())
    image.SetDirection(reference.GetDirection())
    return image


def _on_grid(array: np.ndarray, reference: sitk.Image, vector: bool = False) -> sitk.Image:
    image = sitk.GetImageFromArray(array, isVector=vector)
    image.CopyInformation(reference)
    return image


def _split(result: RegistrationResult, phases: int, slices: Sequence[int], reference: sitk.Image,
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
            fields.append(_on_grid(full, reference, vector=True))
        labels = np.zeros_like(label_array)
        labels[slices] = arrays[2][rows]
        forward_folds, inverse_folds = folding(determinant[rows]), folding(inverse_determinant[rows])
        report = {"folded_voxels": forward_folds.folded_voxels, "min_jacobian": forward_folds.min_jacobian,
                  "inverse_folded_voxels": inverse_folds.folded_voxels,
                  "inverse_consistency_mm": float(result.round_trip_mm[rows].mean())}
        yield fields[0], fields[1], _on_grid(labels.astype(label_array.dtype), reference), report


def cardiac_cycle(volumes: Dict[int, List[float]]) -> Tuple[Dict, Dict[str, Dict]]:
    """End-diastole and end-systole are moments of the heartbeat, the same for every label: the phases of the largest
    and the smallest volume of the label whose volume changes most in ml (a cavity: the myocardium's volume holds,
    and a label of a few voxels cannot lead). Then each label's volumes at those two phases, and the fraction of
    its end-diastolic volume ejected by end-systole; a label that does not shrink between them (the myocardium,
    whose wall thickens in the slices) ejects nothing and has no ejection fraction (None)."""
    leading = max(volumes, key=lambda value: max(volumes[value]) - min(volumes[value]))
    ed, es = int(np.argmax(volumes[leading])), int(np.argmin(volumes[leading]))
    labels = {}
    for value, curve in volumes.items():
        ejected = curve[ed] > curve[es]
        labels[str(value)] = {"ed_ml": round(curve[ed], 3), "es_ml": round(curve[es], 3),
                              "ef_percent": round(100.0 * (curve[ed] - curve[es]) / curve[ed], 2) if ejected else None,
                              "volumes_ml": [round(v, 3) for v in curve]}
    return {"ed_phase": ed, "es_phase": es, "label": str(leading)}, labels


def volumes_in_words(label_volumes: Dict) -> str:
    """``ED 195.8 ml, ES 153.3 ml, EF 21.7 %`` (one label's entry of :func:`cardiac_cycle`), without the EF where the
    label ejects nothing."""
    words = f"ED {label_volumes['ed_ml']:.1f} ml, ES {label_volumes['es_ml']:.1f} ml"
    return words if label_volumes["ef_percent"] is None else f"{words}, EF {label_volumes['ef_percent']:.1f} %"


def against_experts(propagated: List[sitk.Image], experts: List[sitk.Image], values: Sequence[int],
                    voxel_ml: float) -> Dict:
    """Dice / HD95 on every contoured frame (slice, phase), and per label its cycle against the expert's
    (:func:`_expert_cycle`)."""
    frames = []
    for t, (ours, theirs) in enumerate(zip(propagated, experts)):
        expert = sitk.GetArrayViewFromImage(theirs)
        for k in range(expert.shape[0]):
            present = [v for v in values if (expert[k] == v).any()]
            if present:
                scores = label_scores(theirs[:, :, k], ours[:, :, k], present)
                frames.append({"phase": t, "slice": k, **{str(v): vars(scores[v]) for v in present}})
    return {"frames": frames,
            "labels": {str(v): _expert_cycle(propagated, experts, v, voxel_ml) for v in values}}


def _expert_cycle(propagated: List[sitk.Image], experts: List[sitk.Image], value: int, voxel_ml: float) -> Dict:
    """On the slices where the expert drew ``value`` at two phases or more: the expert's and the propagated volumes
    at each slice's larger (end-diastolic) and smaller (end-systolic) contour, and the ejection fractions they
    give."""
    areas = {}
    for t, theirs in enumerate(experts):
        expert = sitk.GetArrayViewFromImage(theirs)
        for k in range(expert.shape[0]):
            if (expert[k] == value).any():
                areas.setdefault(k, []).append((float((expert[k] == value).sum() * voxel_ml), t))
    paired = {k: sorted(found) for k, found in areas.items() if len(found) >= 2}
    volume = lambda image, k: float((sitk.GetArrayViewFromImage(image)[k] == value).sum() * voxel_ml)
    expert_ed, expert_es = (sum(found[i][0] for found in paired.values()) for i in (-1, 0))
    ours_ed, ours_es = (sum(volume(propagated[found[i][1]], k) for k, found in paired.items()) for i in (-1, 0))
    ejection = lambda ed, es: round(100.0 * (ed - es) / ed, 2) if ed > 0 else None
    return {"slices": sorted(paired),
            "ed_phase_per_slice": {str(k): found[-1][1] for k, found in sorted(paired.items())},
            "es_phase_per_slice": {str(k): found[0][1] for k, found in sorted(paired.items())},
            "expert": {"ed_ml": round(expert_ed, 3), "es_ml": round(expert_es, 3),
                       "ef_percent": ejection(expert_ed, expert_es)},
            "propagated": {"ed_ml": round(ours_ed, 3), "es_ml": round(ours_es, 3),
                           "ef_percent": ejection(ours_ed, ours_es)}}
