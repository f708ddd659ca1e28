"""A folder of DICOM images read as one volume or one cine, refused where ITK's series reader would stack it
wrongly without a word (a gap in the slices, a localizer's planes, a cine read as a volume)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import SimpleITK as sitk

from .itk_messages import sitk_reason
from .validation import InputError, same_grid


def read_dicom_series(folder: Path, name: str, cine: bool) -> sitk.Image:
    """A folder holding one DICOM series: a volume of one image per slice position, as GDCM sorts it, or with
    ``cine`` a cine of every phase at each position. A cine read as a volume would stack its phases as slices 1 mm
    apart without a word, so it is refused there, and a volume is no cine. A cine may also be a folder of one
    series per slice position, as many scanners store a short-axis stack."""
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # GDCM's multi-line warning for a folder with no series
    try:
        series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
    if not series or (len(series) > 1 and not cine):
        if not series:
            raise InputError(f"{name} {folder}: is a folder holding no DICOM series; give an image file or the "
                             "folder of one DICOM series")
        raise InputError(f"{name} {folder}: is a folder holding {len(series)} DICOM series; give an image file or "
                         "the folder of one DICOM series (`oderegistration sequence --cine` reads a cine stored as "
                         "one series per slice position)")
    try:
        by_series = {uid: [_dicom_header(file) for file in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(
            str(folder), uid)] for uid in series}
        if len(series) > 1:
            return _read_dicom_cine(_one_cine_of_series(by_series, f"{name} {folder}"), f"{name} {folder}")
        headers = by_series[series[0]]
        positions = {_position_key(header) for header in headers}
        if cine and len(positions) == len(headers):
            raise InputError(f"{name} {folder}: its DICOM series holds one image per slice position (a volume), not "
                             "a cine of every phase at each position")
        if cine:
            return _read_dicom_cine(headers, f"{name} {folder}")
        if len(positions) < len(headers):
            raise InputError(f"{name} {folder}: its DICOM series holds {len(headers)} images at {len(positions)} "
                             "slice positions (a cine, or several echoes), not one volume; `oderegistration "
                             "sequence --cine` reads a cine series")
        return _read_slices(headers, f"{name} {folder}")
    except RuntimeError as error:
        raise InputError(f"{name} {folder}: its DICOM series cannot be read ({sitk_reason(error)})") from None


def _one_cine_of_series(by_series: Dict[str, List[sitk.ImageFileReader]], name: str) -> List[sitk.ImageFileReader]:
    """The images of a cine stored as one series per slice position (a breath-hold each). They are one cine only
    when every series lies at one position of its own, on one in-plane grid: a repeated slice or another view in
    the folder is refused, not mixed in."""
    first, *others = by_series
    for uid in others:
        if not _same_in_plane_grid(by_series[uid][0], by_series[first][0]):
            raise InputError(f"{name}: its DICOM series {uid} lies on another in-plane grid or orientation than "
                             f"series {first} (another view?); a cine's slice positions share one grid")
    at_position: Dict[Tuple[float, ...], str] = {}
    for uid, headers in by_series.items():
        positions = {_position_key(header) for header in headers}
        if len(positions) > 1:
            raise InputError(f"{name}: is a folder holding {len(by_series)} DICOM series, and series {uid} holds "
                             f"images at {len(positions)} slice positions; give the folder of one series, or of "
                             "one series per slice position")
        position = positions.pop()
        if position in at_position:
            raise InputError(f"{name}: its DICOM series {at_position[position]} and {uid} lie at the same slice "
                             "position (a repeated acquisition?); keep one of them")
        at_position[position] = uid
    return [header for headers in by_series.values() for header in headers]


def _same_in_plane_grid(header: sitk.ImageFileReader, other: sitk.ImageFileReader) -> bool:
    """Two images of one size, pixel size and orientation, up to the rounding of DICOM's decimal strings."""
    return (header.GetSize()[:2] == other.GetSize()[:2]
            and np.allclose(header.GetSpacing()[:2], other.GetSpacing()[:2], rtol=1e-4)
            and np.allclose(header.GetDirection(), other.GetDirection(), atol=1e-3))


TRIGGER_TIME = "0018|1060"
"""DICOM's trigger time: ms from the R wave, the time of a cine phase."""
INSTANCE_NUMBER = "0020|0013"


def _dicom_header(file: str) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(file)
    reader.ReadImageInformation()
    return reader


def _position_key(header: sitk.ImageFileReader) -> Tuple[float, ...]:
    return tuple(np.round(header.GetOrigin(), 2))


UNEVEN_SLICES = 0.1
"""How far a slice may lie from its place on an even grid, as a fraction of the step between slices."""


def _read_slices(headers: List[sitk.ImageFileReader], name: str) -> sitk.Image:
    """One volume of the slices in order. ITK's series reader spaces the slices evenly from the first to the last,
    so a series with a slice missing came back with every slice past the gap misplaced and only a multi-line
    warning: such a series is refused, and so are images of other sizes or orientations (a localizer's three
    planes share a series), which it stacked as if they were parallel."""
    odd = next((header for header in headers if not _same_in_plane_grid(header, headers[0])), None)
    if odd is not None:
        files = (Path(header.GetFileName()).name for header in (odd, headers[0]))
        raise InputError(f"{name}: its images do not share one in-plane grid and orientation "
                         f"({' differs from '.join(files)}: a localizer, or several views?); a volume's slices are "
                         "parallel images of one size")
    normal = np.array(headers[0].GetDirection()).reshape(3, 3)[:, 2]
    heights = np.array([np.dot(header.GetOrigin(), normal) for header in headers])
    if len(heights) > 2:
        step = (heights[-1] - heights[0]) / (len(heights) - 1)
        even = heights[0] + step * np.arange(len(heights))
        if np.abs(heights - even).max() > UNEVEN_SLICES * abs(step):
            gaps = np.round(np.diff(heights), 2)
            raise InputError(f"{name}: its slices are not evenly spaced (steps of {gaps.min():g} to {gaps.max():g} "
                             "mm along their normal: a slice missing?); give a series with every slice")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([header.GetFileName() for header in headers])
    return reader.Execute()


def _read_dicom_cine(headers: List[sitk.ImageFileReader], name: str) -> sitk.Image:
    """A 4-D image (x, y, slice, phase): the positions ordered along the slices' normal, each position's images by
    trigger time (by instance number where a file has none), the time axis in ms from the trigger times (their mean
    step)."""
    by_position: Dict[Tuple[float, ...], list] = {}
    for header in headers:
        by_position.setdefault(_position_key(header), []).append(header)
    counts = sorted({len(images) for images in by_position.values()})
    if len(counts) > 1:
        raise InputError(f"{name}: its DICOM cine holds {counts[0]} to {counts[-1]} images per slice position; "
                         "every position needs every phase")
    timed = all(header.HasMetaDataKey(TRIGGER_TIME) for header in headers)
    tag = TRIGGER_TIME if timed else INSTANCE_NUMBER

    def when(header: sitk.ImageFileReader) -> float:
        try:
            return float(header.GetMetaData(tag))
        except (RuntimeError, ValueError):  # no such tag, or no number in it: GDCM's order
            return 0.0

    normal = np.array(headers[0].GetDirection()).reshape(3, 3)[:, 2]
    stacks = [sorted(by_position[key], key=when) for key in sorted(by_position, key=lambda key: np.dot(key, normal))]
    if timed and any(len({when(image) for image in stack}) < len(stack) for stack in stacks):
        raise InputError(f"{name}: its DICOM cine has two images at one trigger time and slice position (several "
                         "echoes, or a repeated acquisition), so its phases cannot be told apart")
    phases = [_read_slices([stack[t] for stack in stacks], name) for t in range(counts[0])]
    for t, phase in enumerate(phases):  # JoinSeries would crop or pad a phase to the first one's size silently
        if not same_grid(phase, phases[0]):
            raise InputError(f"{name}: its DICOM cine's phase {t} (size {phase.GetSize()}, spacing "
                             f"{tuple(round(s, 4) for s in phase.GetSpacing())}) lies on another grid than phase 0 "
                             f"(size {phases[0].GetSize()}); the phases of a cine share one grid")
    times = [when(image) for image in stacks[0]]
    step = (times[-1] - times[0]) / (len(times) - 1) if timed and len(times) > 1 else 1.0
    return sitk.JoinSeries(phases, times[0] if timed else 0.0, step)
