"""Reading the command line's inputs with clear errors: image files (a NIfTI file cut short is refused), DICOM
folders (dicom_series.py), and label maps as Slicer saves them."""
from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from .dicom_series import read_dicom_series
from .itk_messages import itk_warnings_as_python_warnings, sitk_reason
from .validation import InputError, same_grid


def read_image(path: str | os.PathLike, name: str, cine: bool = False) -> sitk.Image:
    """Read any file SimpleITK reads, or a folder of one DICOM series (with ``cine``, a cine series: every phase at
    each slice position); a missing or unreadable input is an InputError naming it."""
    path = Path(path)
    if path.is_dir():
        return read_dicom_series(path, name, cine)
    if not path.exists():
        raise InputError(f"{name} {path}: no such file")
    if not path.is_file():
        raise InputError(f"{name} {path}: is not a file (a device, a pipe or a socket); give an image file")
    if path.name.lower().endswith((".nii", ".nii.gz")):
        _check_nifti_complete(path, name)  # first: ITK allocates what the header announces before it reads
    try:
        with itk_warnings_as_python_warnings(f"{name} {path}"):
            return sitk.ReadImage(str(path))
    except RuntimeError as error:
        reason = sitk_reason(error)
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
