"""A cine as the engine reads it: its phases as 3-D volumes on one grid, their times in ms (when the file gives
any), and the labels drawn on it (the reference phase's, and an expert's label sequence to score against)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

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
        labels = on_grid(sitk.GetArrayFromImage(labels)[None], reference)
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


def on_grid(array: np.ndarray, reference: sitk.Image, vector: bool = False) -> sitk.Image:
    """An array of a phase's shape (with ``vector``, one vector per voxel) as an image on that phase's grid."""
    image = sitk.GetImageFromArray(array, isVector=vector)
    image.CopyInformation(reference)
    return image
