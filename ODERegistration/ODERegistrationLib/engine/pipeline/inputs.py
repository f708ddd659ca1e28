"""Reading the command line's inputs with clear errors: image files, DICOM series and cines, and label maps as
Slicer saves them."""
from __future__ import annotations

import gzip
import math
import os
import re
import struct
import sys
import tempfile
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from .validation import InputError, same_grid


def read_image(path: str | os.PathLike, name: str, cine: bool = False) -> sitk.Image:
    """Read any file SimpleITK reads, or a folder of one DICOM series (with ``cine``, a cine series: every phase at
    each slice position); a missing or unreadable input is an InputError naming it."""
    path = Path(path)
    if path.is_dir():
        return _read_dicom_series(path, name, cine)
    if not path.is_file():
        raise InputError(f"{name} {path}: no such file")
    if path.name.lower().endswith((".nii", ".nii.gz")):
        _check_nifti_complete(path, name)  # first: ITK allocates what the header announces before it reads
    try:
        with _itk_warnings_as_python_warnings(f"{name} {path}"):
            return sitk.ReadImage(str(path))
    except RuntimeError as error:
        reason = _sitk_reason(error)
        if "allocate" in reason:
            reason = reason.rstrip(".") + _header_size(path)
        raise InputError(f"{name} {path}: cannot be read ({reason})") from None


def read_label_map(path: str | os.PathLike, name: str, image: sitk.Image, mask: bool = False) -> sitk.Image:
    """A label map or mask of ``image`` as :func:`read_image` reads it, taken as meant where ITK reads what Slicer
    writes otherwise: a segmentation (.seg.nrrd) whose segments overlap holds one layer per component (a mask is
    their union; labels, one value per voxel, cannot be); a 2-D image's segmentation is a volume of one slice (its
    plane is taken); and a segmentation is saved on the image's voxels but over another extent (cropped to its
    segments, or grown to hold them), which is placed on the image's grid voxel for voxel."""
    labels = read_image(path, name)
    segmentation = _is_slicer_segmentation(labels)
    if segmentation and not np.any(sitk.GetArrayViewFromImage(labels)):
        raise InputError(f"{name} {path}: is a Slicer segmentation with no segment drawn (Slicer saves one as a "
                         "single empty voxel); draw the segments first")
    layers = labels.GetNumberOfComponentsPerPixel()
    if layers > 1 and segmentation:
        if not mask:
            raise InputError(f"{name} {path}: is a Slicer segmentation whose segments overlap ({layers} layers), so "
                             "a voxel has no single label; make them exclusive (Segment Editor's masking, 'Overwrite "
                             "other segments') or give the enclosing segment as a mask")
        labels = sitk.VectorMagnitude(labels) > 0
    if image.GetDimension() == 2 and labels.GetDimension() == 3 and labels.GetSize()[2] == 1:
        try:
            labels = labels[:, :, 0]
        except RuntimeError:  # a slice whose plane is not the image's axes: check_labels names the grids
            return labels
    if labels.GetDimension() == image.GetDimension() and not same_grid(labels, image) and _same_voxels(labels, image):
        return _on_the_grid_of(image, labels, f"{name} {path}")
    return labels


def _same_voxels(labels: sitk.Image, image: sitk.Image) -> bool:
    """The same spacing and axes, and an origin a whole number of voxels away: the image's grid, another extent."""
    if not (np.allclose(labels.GetSpacing(), image.GetSpacing(), rtol=1e-4, atol=1e-5)
            and np.allclose(labels.GetDirection(), image.GetDirection(), atol=1e-4)):  # as same_grid rounds
        return False
    offset = np.array(image.TransformPhysicalPointToContinuousIndex(labels.GetOrigin()))
    return bool(np.allclose(offset, np.round(offset), atol=1e-3))


def _on_the_grid_of(image: sitk.Image, labels: sitk.Image, name: str) -> sitk.Image:
    """Labels on the image's voxels over another extent, copied onto the image's extent; labels beyond it would be
    lost without a word, so they are refused."""
    placed = sitk.Resample(labels, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, labels.GetPixelID())
    lost = (np.count_nonzero(sitk.GetArrayViewFromImage(labels))
            - np.count_nonzero(sitk.GetArrayViewFromImage(placed)))
    if lost:
        raise InputError(f"{name}: {lost} of its labelled voxels lie beyond its image's extent; give labels within "
                         "the image (in Slicer: export the segmentation with the image as reference volume)")
    return placed


def segment_names(path: str | os.PathLike) -> Dict[str, str]:
    """The segments' names by label value in a Slicer segmentation file's header; empty for any other input."""
    if Path(path).is_dir():
        return {}
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    keys = set(reader.GetMetaDataKeys())
    names = {}
    for index in range(len(keys)):
        value_key, name_key = f"Segment{index}_LabelValue", f"Segment{index}_Name"
        if value_key not in keys or name_key not in keys:
            break
        names[reader.GetMetaData(value_key).strip()] = reader.GetMetaData(name_key).strip()
    return names


def _is_slicer_segmentation(image: sitk.Image) -> bool:
    return image.HasMetaDataKey("Segmentation_ContainedRepresentationNames")


class ReaderWarning(UserWarning):
    """What ITK's reader said of a file it read: how it took a header it found odd (a NIfTI sform whose scales
    differ from its voxel size, say), the only sign that the geometry may not be what the file meant."""


ITK_OBJECT = r"\w+ ?\(0x[0-9a-f]+\): "
"""How ITK starts a message: the class and the address of the object that says it."""
ITK_WARNING = re.compile(rf"^WARNING: In [^\n]*\n{ITK_OBJECT}([^\n]*)\n?\n?", re.MULTILINE)
"""ITK's warning as it prints it: a line naming its source file, then the object and the message."""


@contextmanager
def _itk_warnings_as_python_warnings(source: str) -> Iterator[None]:
    """ITK prints its warnings to the process's standard error, three lines each with a path inside ITK's build;
    while a file is read they are collected and passed on as one ReaderWarning each, naming the input (the command
    line prints each as one line). Anything else written there meanwhile is passed on as it was."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no standard error to catch them on (a process started without one)
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            sys.stderr.write(ITK_WARNING.sub("", text))
    for message in dict.fromkeys(ITK_WARNING.findall(text)):  # ITK may say the same thing twice
        warnings.warn(f"{source}: ITK: {message}", ReaderWarning, stacklevel=2)


def _sitk_reason(error: RuntimeError) -> str:
    """SimpleITK's or ITK's own one-line reason from the multi-line exception text (ITK's reader raises its own:
    a NIfTI file whose sform is sheared is readable but not representable)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        for prefix in ("sitk::ERROR:", "ITK ERROR:"):
            if line.startswith(prefix):
                return re.sub(f"^{ITK_OBJECT}", "", line.removeprefix(prefix).strip())
    if len(lines) > 1 and lines[0].startswith("Exception thrown in SimpleITK"):  # below the line of ITK's source
        return lines[-1]
    return "not an image format SimpleITK can read"


def _header_size(path: Path) -> str:
    """What the file's header says of the image's size, read without its voxels; empty if it cannot be read."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return ""
    size = reader.GetSize()
    return f"; its header gives {' x '.join(map(str, size))} = {math.prod(size):.3g} voxels"


def _read_dicom_series(folder: Path, name: str, cine: bool) -> sitk.Image:
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
        raise InputError(f"{name} {folder}: its DICOM series cannot be read ({_sitk_reason(error)})") from None


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


def _check_nifti_complete(path: Path, name: str) -> None:
    """ITK reads a NIfTI file that ends early (an interrupted copy or download) without a word, the missing voxels
    as 0, and a header announcing gigabytes costs their allocation first: refuse one whose data is shorter than its
    header says, or whose compressed stream is cut."""
    try:
        if path.name.lower().endswith(".gz"):
            header, size = _decompressed_start_and_length(path)
        else:
            with path.open("rb") as stream:
                header, size = stream.read(544), path.stat().st_size
    except (EOFError, OSError, zlib.error) as error:
        raise InputError(f"{name} {path}: is truncated or damaged ({error})") from None
    expected = _nifti_bytes(header)
    if expected is not None and size < expected:
        raise InputError(f"{name} {path}: is truncated: its header announces {expected} bytes of data and header, "
                         f"the file holds {size} (an interrupted copy or download?)")


def _decompressed_start_and_length(path: Path) -> Tuple[bytes, int]:
    """The first bytes of a gzip file's content and the content's length, read through to the end; nothing for a
    file that is no gzip stream at all (ITK then says what it is)."""
    with gzip.open(path, "rb") as stream:
        try:
            start = stream.read(544)
        except gzip.BadGzipFile:
            return b"", 0
        length = len(start)
        while chunk := stream.read(1 << 22):
            length += len(chunk)
    return start, length


def _nifti_bytes(header: bytes) -> Optional[int]:
    """Header plus voxel data length a NIfTI-1 header announces (either byte order); None for anything else (a
    NIfTI-2 file keeps only the compressed stream's check)."""
    for order in "<>":
        if len(header) < 348 or struct.unpack(order + "i", header[:4])[0] != 348:
            continue
        dims = struct.unpack(order + "8h", header[40:56])
        bitpix = struct.unpack(order + "h", header[72:74])[0]
        offset = struct.unpack(order + "f", header[108:112])[0]
        if not 1 <= dims[0] <= 7:
            return None
        return int(offset) + math.prod(max(n, 1) for n in dims[1:dims[0] + 1]) * bitpix // 8
    return None
