"""Reading inputs with clear errors, and writing a result directory that is complete or absent."""
from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from .registration import RegistrationResult
from .sequence import Cine, SequenceResult
from .validation import InputError, same_grid

OUTPUT_FILES = {
    "forward": "displacement.nii.gz",
    "backward": "inverse_displacement.nii.gz",
    "warped": "warped.nii.gz",
    "inverse_warped": "inverse_warped.nii.gz",
    "jacobian": "jacobian.nii.gz",
    "warped_labels": "warped_labels.nii.gz",
}


def read_image(path: str | os.PathLike, name: str, cine: bool = False) -> sitk.Image:
    """Read any file SimpleITK reads, or a folder of one DICOM series (with ``cine``, a cine series: every phase at
    each slice position); a missing or unreadable input is an InputError naming it."""
    path = Path(path)
    if path.is_dir():
        return _read_dicom_series(path, name, cine)
    if not path.is_file():
        raise InputError(f"{name} {path}: no such file")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise InputError(f"{name} {path}: cannot be read ({_sitk_reason(error)})") from None
    if path.name.lower().endswith((".nii", ".nii.gz")):
        _check_nifti_complete(path, name)
    return image


def read_label_map(path: str | os.PathLike, name: str, image: sitk.Image, mask: bool = False) -> sitk.Image:
    """A label map or mask of ``image`` as :func:`read_image` reads it, taken as meant where ITK reads what Slicer
    writes otherwise: a segmentation (.seg.nrrd) whose segments overlap holds one layer per component (a mask is
    their union; labels, one value per voxel, cannot be); a 2-D image's segmentation is a volume of one slice (its
    plane is taken); and a segmentation is saved on the image's voxels but over another extent (cropped to its
    segments, or grown to hold them), which is placed on the image's grid voxel for voxel."""
    labels = read_image(path, name)
    layers = labels.GetNumberOfComponentsPerPixel()
    if layers > 1 and _is_slicer_segmentation(labels):
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
    return image.HasMetaDataKey("Segment0_Layer")


def _sitk_reason(error: RuntimeError) -> str:
    """SimpleITK's own one-line reason from its multi-line exception text."""
    return next((line.strip().removeprefix("sitk::ERROR:").strip() for line in str(error).splitlines()
                 if line.strip().startswith("sitk::ERROR:")), "not an image format SimpleITK can read")


def _read_dicom_series(folder: Path, name: str, cine: bool) -> sitk.Image:
    """A folder holding one DICOM series: a volume of one image per slice position, as GDCM sorts it, or with
    ``cine`` a cine of every phase at each position. A cine read as a volume would stack its phases as slices 1 mm
    apart without a word, so it is refused there, and a volume is no cine."""
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # GDCM's multi-line warning for a folder with no series
    try:
        series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
    if len(series) != 1:
        found = "no DICOM series" if not series else f"{len(series)} DICOM series"
        raise InputError(f"{name} {folder}: is a folder holding {found}; give an image file or the folder of one "
                         "DICOM series")
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0])
    try:
        headers = [_dicom_header(file) for file in files]
        positions = {_position_key(header) for header in headers}
        if cine and len(positions) == len(files):
            raise InputError(f"{name} {folder}: its DICOM series holds one image per slice position (a volume), not "
                             "a cine of every phase at each position")
        if cine:
            return _read_dicom_cine(headers, f"{name} {folder}")
        if len(positions) < len(files):
            raise InputError(f"{name} {folder}: its DICOM series holds {len(files)} images at {len(positions)} slice "
                             "positions (a cine, or several echoes), not one volume; `oderegistration sequence "
                             "--cine` reads a cine series")
        return _read_files(files)
    except RuntimeError as error:
        raise InputError(f"{name} {folder}: its DICOM series cannot be read ({_sitk_reason(error)})") from None


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


def _read_files(files: List[str]) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
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
    phases = [_read_files([stack[t].GetFileName() for stack in stacks]) for t in range(counts[0])]
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
    as 0: refuse one whose data is shorter than its header says, or whose compressed stream is cut."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            header = stream.read(544)
            size = len(header)
            while chunk := stream.read(1 << 22):
                size += len(chunk)
    except (EOFError, OSError, zlib.error) as error:
        raise InputError(f"{name} {path}: is truncated or damaged ({error})") from None
    expected = _nifti_bytes(header)
    if expected is not None and size < expected:
        raise InputError(f"{name} {path}: is truncated: its header announces {expected} bytes of data and header, "
                         f"the file holds {size} (an interrupted copy or download?)")


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


EXTRA_FILES = ("qa.png", "report.json")
"""Written beside the images; a re-run removes every file of both lists that it does not write itself."""


def check_output_dir(output_dir: str | os.PathLike) -> Path:
    """Refuse an output folder that cannot be written, before any work is done."""
    if not str(output_dir).strip():
        raise InputError("output folder: the path is empty")
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise InputError(f"output folder {path}: is a file, not a folder")
    parent = next((p for p in [path, *path.parents] if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"output folder {path}: {parent} cannot be written to")
    return path


def refuse_inputs_among_outputs(output_dir: Path, inputs: Dict[str, str], is_output: Callable[[str], bool]) -> None:
    """Refuse, before any work is done, an input (``inputs``: name -> path) that lies in the output folder under
    the name of an output, which the run would overwrite or remove: a chained run given ``out/warped.nii.gz`` and
    ``--output-dir out``, for example; and a DICOM folder given as the output folder, which would mix the outputs
    into the series."""
    for name, given in inputs.items():
        given = Path(given)
        if given.is_dir() and given.resolve() == output_dir.resolve():
            raise InputError(f"{name} {given}: is the output folder, so the outputs would be written among its DICOM "
                             "files; choose another output folder")
        if is_output(given.name) and given.resolve().parent == output_dir.resolve():
            raise InputError(f"{name} {given}: lies in the output folder under the name of an output, so the run "
                             "would overwrite or remove it; choose another output folder")


def write_result(result: RegistrationResult, output_dir: str | os.PathLike,
                 write_extras: Optional[Callable[[Path], None]] = None) -> Path:
    """Write every output of a pair into ``output_dir``, all at once (:func:`write_folder`)."""
    def write(staging: Path) -> None:
        for attribute, filename in OUTPUT_FILES.items():
            image = getattr(result, attribute)
            if image is not None:
                sitk.WriteImage(_readable_as_written(image), str(staging / filename), useCompression=True)
        if write_extras is not None:
            write_extras(staging)
        write_report(result.report, staging)

    return write_folder(output_dir, write, is_pair_output)


def _readable_as_written(image: sitk.Image) -> sitk.Image:
    """ITK reads a vector NIfTI whose last axis holds one voxel as an image of one dimension less: the field of a
    one-slice volume (a slice saved from Slicer, a frame of a 2-D cine) came back 2-D with 3 components, which no
    reader applies to the volume. Such a field is written with its slice repeated once along that axis (the same
    displacement over one more slice), so it is read back 3-D, on the volume's geometry."""
    if image.GetNumberOfComponentsPerPixel() == 1 or image.GetDimension() != 3 or image.GetSize()[2] != 1:
        return image
    repeated = sitk.Tile([image, image], [1, 1, 2])
    repeated.SetOrigin(image.GetOrigin())
    repeated.SetSpacing(image.GetSpacing())
    repeated.SetDirection(image.GetDirection())
    return repeated


def is_pair_output(name: str) -> bool:
    """Whether a file of this name is one that ``register`` writes (or removes, as left from an earlier run)."""
    return name in OUTPUT_FILES.values() or name in EXTRA_FILES


def write_report(report: dict, folder: Path) -> None:
    (folder / "report.json").write_text(json.dumps(_json_safe(report), indent=2) + "\n")


def write_folder(output_dir: str | os.PathLike, write: Callable[[Path], None],
                 is_output: Callable[[str], bool]) -> Path:
    """Run ``write`` into a staging folder and move its files in only when all of them were written, so an error
    never leaves a directory that looks complete; files of an earlier run (``is_output`` of their name) that this
    one does not write are removed, so the folder never mixes two runs."""
    output_dir = check_output_dir(output_dir)
    try:
        output_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"output folder {output_dir}: cannot be created ({error.strerror})") from None
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        try:
            write(staging)
        except (OSError, RuntimeError) as error:  # a full disk, say; RuntimeError is how SimpleITK reports it
            if isinstance(error, RuntimeError) and "ImageFileWriter" not in str(error):
                raise
            reason = str(error).strip().splitlines()[-1]
            raise InputError(f"output folder {output_dir}: the outputs could not be written ({reason}); nothing "
                             "was written and an earlier run's files are as they were") from None
        output_dir.mkdir(exist_ok=True)
        written = {path.name for path in staging.iterdir()}
        for stale in output_dir.iterdir():
            if stale.is_file() and is_output(stale.name) and stale.name not in written:
                stale.unlink()
        for path in staging.iterdir():
            os.replace(path, output_dir / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir


def _json_safe(value):
    """NaN and infinity are not JSON: write them as null."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


SEQUENCE_FILES = ("labels.nii.gz", "volumes.csv", "volume_curve.png", "qa.png", "report.json")
"""A sequence folder holds these and ``forward_phaseNN.nii.gz`` / ``inverse_phaseNN.nii.gz`` for every phase."""


def write_sequence(result: SequenceResult, cine: Cine, output_dir: str | os.PathLike,
                   write_extras: Optional[Callable[[Path], None]] = None) -> Path:
    """Every phase's forward and inverse fields, the propagated labels as one image in the input's layout (4-D,
    or 2-D + time, with its time axis as read), volumes.csv (no time where the cine gives none), the extras
    (pictures) and report.json, all at once (:func:`write_folder`). ``cine`` as read from its file."""
    def write(staging: Path) -> None:
        for t, (forward, backward) in enumerate(zip(result.forward, result.backward)):
            sitk.WriteImage(_readable_as_written(forward), str(staging / f"forward_phase{t:02d}.nii.gz"),
                            useCompression=True)
            sitk.WriteImage(_readable_as_written(backward), str(staging / f"inverse_phase{t:02d}.nii.gz"),
                            useCompression=True)
        origin, step = cine.time_axis
        if cine.time_axis_in_input == 3:
            labels = sitk.JoinSeries(result.labels, origin, step)
        else:  # the 2-D + time image's own geometry: its phases share its origin and orientation
            labels = sitk.JoinSeries([frame[:, :, 0] for frame in result.labels])
            labels.SetOrigin(result.labels[0].GetOrigin())
            labels.SetDirection(result.labels[0].GetDirection())
            labels.SetSpacing(result.labels[0].GetSpacing()[:2] + (step,))
        sitk.WriteImage(labels, str(staging / "labels.nii.gz"), useCompression=True)
        rows = ["phase,time_ms,label,volume_ml"] + [
            f"{t},{'' if cine.times_ms is None else f'{cine.times_ms[t]:g}'},{label},{volumes[t]:.3f}"
            for label, volumes in result.volumes_ml.items() for t in range(len(volumes))]
        (staging / "volumes.csv").write_text("\n".join(rows) + "\n")
        if write_extras is not None:
            write_extras(staging)
        write_report(result.report, staging)

    return write_folder(output_dir, write, is_sequence_output)


def is_sequence_output(name: str) -> bool:
    """Whether a file of this name is one that ``sequence`` writes (or removes, as left from an earlier run)."""
    return name in SEQUENCE_FILES or name.startswith(("forward_phase", "inverse_phase"))


def refuse_another_commands_outputs(output_dir: Path, is_output: Callable[[str], bool],
                                    is_other_output: Callable[[str], bool], other_command: str) -> None:
    """Refuse, before any work is done, a folder that holds outputs of the other command: a run removes only its
    own kind's earlier files, so a sequence's report.json would sit beside a pair's displacement.nii.gz."""
    if not output_dir.is_dir():
        return
    foreign = sorted(path.name for path in output_dir.iterdir()
                     if path.is_file() and is_other_output(path.name) and not is_output(path.name))
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise InputError(f"output folder {output_dir}: holds the outputs of `oderegistration {other_command}` "
                         f"({shown}), which this run would leave mixed with its own; choose another output folder")
