"""Pairs of a dataset folder described by a manifest.json in the format of ../shared/data."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk


@dataclass(frozen=True)
class Pair:
    id: str
    dim: int
    folder: Path
    files: Dict[str, str]
    label_names: Dict[int, str]
    eval_labels: List[int]
    labelled_slices_fixed: Optional[List[int]]
    """For stacks labelled on some slices only: the fixed slices (0-based z) that carry labels."""
    isotropic_size: Optional[int] = None
    """When set, every image of the pair is resampled onto the cube of ``isotropic_reference``."""
    isotropic_spacing: Optional[float] = None
    """When set, every image of the pair is resampled onto the whole field of view at this isotropic spacing."""
    stack_slice: Optional[int] = None
    """When set, the pair is this slice (0-based k) of a stack pair, as 2-D images."""

    def image(self, key: str) -> sitk.Image:
        image = sitk.ReadImage(str(self.folder / self.files[key]))
        if self.stack_slice is not None:
            return image[:, :, self.stack_slice]
        if self.isotropic_size is None and self.isotropic_spacing is None:
            return image
        labels = sitk.ReadImage(str(self.folder / self.files["fixed_labels"]))
        reference = (isotropic_reference(labels, self.isotropic_size) if self.isotropic_size is not None
                     else whole_field_of_view(labels, self.isotropic_spacing))
        interpolator = sitk.sitkNearestNeighbor if key.endswith("labels") else sitk.sitkLinear
        return sitk.Resample(image, reference, sitk.Transform(), interpolator, 0.0, image.GetPixelID())


def isotropic_reference(labels: sitk.Image, size: int) -> sitk.Image:
    """A cube of size**3 isotropic voxels around the labelled anatomy, as deep as the volume's shortest extent.

    Turns a thick-slice stack into the isotropic volume of a 3-D benchmark (interpolated between slices); the
    region of interest is centred on the labels' centroid, as a user would place one around the heart.
    """
    side = min(n * s for n, s in zip(labels.GetSize(), labels.GetSpacing()))
    spacing = side / size
    statistics = sitk.LabelShapeStatisticsImageFilter()
    statistics.Execute(sitk.Cast(labels > 0, sitk.sitkUInt8))
    centre = np.array(statistics.GetCentroid(1))
    direction = np.array(labels.GetDirection()).reshape(3, 3)
    origin = centre - direction @ np.full(3, spacing * (size - 1) / 2.0)
    reference = sitk.Image([size] * 3, sitk.sitkUInt8)
    reference.SetSpacing([spacing] * 3)
    reference.SetDirection(labels.GetDirection())
    reference.SetOrigin(origin.tolist())
    return reference


def whole_field_of_view(image: sitk.Image, spacing: float) -> sitk.Image:
    """The image's whole field of view sampled at an isotropic spacing: a stack becomes a volume, as a new user
    would make one (10 ACDC slices of 10 mm at 1.5625 mm give 232 x 256 x 64); a 2-D image gets another pixel size,
    as another scanner's reconstruction would give it."""
    dim = image.GetDimension()
    size = [max(1, int(round(n * s / spacing))) for n, s in zip(image.GetSize(), image.GetSpacing())]
    reference = sitk.Image(size, sitk.sitkUInt8)
    reference.SetSpacing([spacing] * dim)
    reference.SetDirection(image.GetDirection())
    first_edge = np.array(image.TransformContinuousIndexToPhysicalPoint([-0.5] * dim))
    direction = np.array(image.GetDirection()).reshape(dim, dim)
    reference.SetOrigin(first_edge + direction @ np.full(dim, spacing / 2))
    return reference


def load_pairs(folder: Path, dim: Optional[int] = None, limit: Optional[int] = None,
               isotropic_size: Optional[int] = None, isotropic_spacing: Optional[float] = None,
               stack_slices: bool = False, reverse: bool = False,
               ids: Optional[Sequence[str]] = None) -> List[Pair]:
    """The manifest's pairs; with ``isotropic_size``, its fully labelled 3-D pairs resampled onto a cube; with
    ``isotropic_spacing``, its fully labelled pairs (2-D and 3-D) onto their whole field of view at that spacing;
    with ``stack_slices``, every slice of its fully labelled 3-D pairs on which both label maps hold every evaluated
    label, as a 2-D pair (base to apex, not the mid-ventricular slice alone); with ``reverse``, each pair the other
    way round (the ES labels carried onto the ED image: an expansion instead of a contraction); with ``ids``, only
    the pairs whose id contains one of these texts (to finish or repeat part of a run); a text that matches no pair
    is refused, so a typing error cannot shrink a run unnoticed."""
    manifest = read_manifest(folder, "pairs")
    fixed, moving = ("moving", "fixed") if reverse else ("fixed", "moving")
    pairs = []
    for number, entry in enumerate(manifest["pairs"]):
        try:
            if dim is not None and entry["dim"] != dim:
                continue
            pair = Pair(
                id=entry["id"] + ("_reversed" if reverse else ""), dim=entry["dim"], folder=folder,
                files={"fixed": entry[fixed], "moving": entry[moving], "fixed_labels": entry[f"{fixed}_labels"],
                       "moving_labels": entry[f"{moving}_labels"]},
                label_names={int(k): v for k, v in entry.get("label_names", manifest.get("label_names", {})).items()},
                eval_labels=list(entry["eval_labels"]),
                labelled_slices_fixed=entry.get(f"labelled_slices_{fixed}"))
        except (KeyError, TypeError, ValueError) as error:
            raise DatasetError(f"{folder / 'manifest.json'}: pair {number} lacks or garbles {error}") from None
        missing = [name for name in pair.files.values() if not (folder / name).is_file()]
        if missing:
            raise DatasetError(f"{folder / 'manifest.json'}: pair {pair.id} lists {missing[0]}, which is not in "
                               f"{folder}")
        pairs.append(pair)
    if isotropic_size is not None:
        pairs = [dataclasses.replace(pair, id=f"{pair.id}_iso{isotropic_size}", isotropic_size=isotropic_size)
                 for pair in pairs if pair.dim == 3 and pair.labelled_slices_fixed is None]
    elif isotropic_spacing is not None:
        pairs = [dataclasses.replace(pair, id=f"{pair.id}_fov{isotropic_spacing:g}mm", isotropic_spacing=isotropic_spacing)
                 for pair in pairs if pair.labelled_slices_fixed is None]
    elif stack_slices:
        pairs = [dataclasses.replace(pair, id=f"{pair.id}_slice{k:02d}", dim=2, stack_slice=k)
                 for pair in pairs if pair.dim == 3 and pair.labelled_slices_fixed is None
                 for k in _slices_with_every_label(pair)]
    if ids:
        unmatched = next((text for text in ids if not any(text in pair.id for pair in pairs)), None)
        if unmatched is not None:
            raise DatasetError(f"{folder / 'manifest.json'}: no pair's id contains {unmatched!r} with these options")
        pairs = [pair for pair in pairs if any(text in pair.id for text in ids)]
    pairs = pairs[:limit] if limit else pairs
    if not pairs:
        raise DatasetError(f"{folder / 'manifest.json'}: no pair to run with these options (--dim; --isotropic, "
                           "--whole-fov-spacing and --stack-slices take only stacks labelled on every slice)")
    return pairs


class DatasetError(ValueError):
    """A data folder the benchmark cannot run on; the message names the file and the problem."""


def read_manifest(folder: Path, entries: str) -> dict:
    """A data folder's manifest.json, which lists its ``entries`` ("pairs", or a cine folder's "sequences")."""
    path = folder / "manifest.json"
    if not path.is_file():
        raise DatasetError(f"--data {folder}: holds no manifest.json; give the folder of one dataset, such as "
                           "../shared/data/acdc")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as error:
        raise DatasetError(f"{path}: is not JSON ({error})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get(entries), list):
        raise DatasetError(f"{path}: has no list of '{entries}'")
    return manifest


def _slices_with_every_label(pair: Pair) -> List[int]:
    """The slices (0-based k) on which the fixed and the moving labels both hold every evaluated label."""
    arrays = [sitk.GetArrayFromImage(pair.image(key)) for key in ("fixed_labels", "moving_labels")]
    return [k for k in range(arrays[0].shape[0])
            if all(np.any(array[k] == label) for array in arrays for label in pair.eval_labels)]
