"""Register two SimpleITK images: geometry in, physical displacement fields and QA measures out.

The moving image is first resampled onto the fixed grid (origin, spacing, direction), so every field the
optimizer fits lives on the fixed grid. Outputs are ITK displacement fields in LPS millimetres:

- forward: resamples moving onto fixed, ``warped(x) = moving(x + U_F(x))``;
- backward: resamples fixed onto moving, ``fixed(y + U_B(y))``; it maps moving-space points to fixed-space points.
"""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np
import SimpleITK as sitk
import torch

from . import __version__
from .device import DeviceError, choose_device, is_out_of_memory, out_of_memory_message
from .fields import compose
from .layout import TensorLayout, choose_layout
from .metrics import folding, index_to_physical_matrix, jacobian_determinant, label_scores
from .optimizer import optimize_fields
from .parameters import RegistrationParameters
from .progress import CancelCheck, ProgressCallback
from .validation import InputError, check_image, check_labels, check_pair


@dataclass
class RegistrationResult:
    forward: sitk.Image
    """Displacement field on the fixed grid (LPS mm); resamples moving onto fixed."""
    backward: sitk.Image
    """Displacement field on the fixed grid (LPS mm); resamples fixed onto moving."""
    warped: sitk.Image
    """Moving resampled onto the fixed grid through ``forward``."""
    inverse_warped: sitk.Image
    """Fixed resampled onto the moving grid through ``backward``."""
    jacobian: sitk.Image
    """det J of the forward map, on the fixed grid."""
    warped_labels: Optional[sitk.Image] = None
    report: Dict = field(default_factory=dict)


def register_images(fixed: sitk.Image, moving: sitk.Image,
                    parameters: RegistrationParameters = RegistrationParameters(),
                    moving_labels: Optional[sitk.Image] = None, fixed_labels: Optional[sitk.Image] = None,
                    progress: ProgressCallback = None, cancel: CancelCheck = None,
                    names: Optional[Dict[str, str]] = None) -> RegistrationResult:
    """Run the registration on images with physical geometry; ``names`` label inputs in error messages."""
    names = {"fixed": "fixed image", "moving": "moving image", "fixed_labels": "fixed labels",
             "moving_labels": "moving labels", **(names or {})}
    check_pair(fixed, moving, names["fixed"], names["moving"])
    fixed_array = check_image(fixed, names["fixed"])
    check_image(moving, names["moving"])
    if moving_labels is not None:
        check_labels(moving_labels, moving, names["moving_labels"], names["moving"])
    if fixed_labels is not None:
        check_labels(fixed_labels, fixed, names["fixed_labels"], names["fixed"])
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    moving_on_fixed = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, sitk.Transform(), sitk.sitkLinear, 0.0))
    if np.ptp(moving_on_fixed) == 0:
        raise InputError(f"{names['moving']}: does not overlap {names['fixed']} in physical space "
                         "(check origins and directions, or align them first)")

    layout = choose_layout(parameters.mode, fixed_array.shape, fixed.GetSpacing()[::-1])
    device = choose_device(parameters.device)
    start = time.perf_counter()
    try:
        fields = optimize_fields(layout.to_tensor(normalize_intensities(fixed_array), device),
                                 layout.to_tensor(normalize_intensities(moving_on_fixed), device),
                                 layout.spacing, parameters, progress, cancel)
        round_trip = compose(fields.backward, fields.forward)
    except RuntimeError as error:
        if is_out_of_memory(error):
            raise DeviceError(out_of_memory_message(device, fixed_array.shape)) from error
        raise
    seconds = time.perf_counter() - start

    forward = displacement_image(layout, fields.forward, fixed)
    backward = displacement_image(layout, fields.backward, fixed)
    warped = resample(moving, fixed, forward)
    inverse_warped = resample(sitk.Cast(fixed, sitk.sitkFloat32), moving, backward)
    determinant = jacobian_determinant(forward)
    jacobian = sitk.GetImageFromArray(determinant.astype(np.float32))
    jacobian.CopyInformation(fixed)
    round_trip_mm = np.linalg.norm(sitk.GetArrayFromImage(displacement_image(layout, round_trip, fixed)), axis=-1)

    fold = folding(determinant)
    report = {
        "seconds": round(seconds, 3),
        "iterations": fields.iterations_run,
        "final_loss": fields.final_loss,
        "device": str(device),
        "mode": layout.mode,
        "folded_voxels": fold.folded_voxels,
        "folded_fraction": fold.folded_fraction,
        "min_jacobian": fold.min_jacobian,
        "max_jacobian": float(determinant.max()),
        "inverse_consistency_mm": float(round_trip_mm.mean()),
        "inverse_consistency_max_mm": float(round_trip_mm.max()),
        "parameters": parameters.as_dict(),
        "versions": {"oderegistration": __version__, "torch": torch.__version__, "SimpleITK": sitk.Version_VersionString(),
                     "python": platform.python_version()},
    }
    result = RegistrationResult(forward, backward, warped, inverse_warped, jacobian, report=report)
    if moving_labels is not None:
        result.warped_labels = warp_labels(moving_labels, fixed, forward)
        if fixed_labels is not None:
            report["labels"] = evaluate_labels(fixed_labels, moving_labels, result.warped_labels)
    return result


def normalize_intensities(array: np.ndarray) -> np.ndarray:
    """Map the 0.5-99.5 percentile range to [0, 1] and clip, so similarity terms see comparable contrast."""
    low, high = np.percentile(array, [0.5, 99.5])
    if high <= low:
        low, high = float(array.min()), float(array.max())
    return np.clip((array - low) / (high - low), 0.0, 1.0).astype(np.float32)


def displacement_image(layout: TensorLayout, normalized_field: torch.Tensor, reference: sitk.Image) -> sitk.Image:
    """Normalized optimizer field -> ITK displacement field (LPS mm vectors) on the reference grid."""
    voxels = layout.to_voxel_displacement(normalized_field)
    physical = voxels @ index_to_physical_matrix(reference).T
    image = sitk.GetImageFromArray(physical, isVector=True)
    image.CopyInformation(reference)
    return image


def resample(image: sitk.Image, reference: sitk.Image, displacement: sitk.Image,
             interpolator: int = sitk.sitkLinear) -> sitk.Image:
    """Resample ``image`` onto ``reference`` through a displacement field (which is left untouched)."""
    transform = sitk.DisplacementFieldTransform(sitk.Image(displacement))
    return sitk.Resample(image, reference, transform, interpolator, 0.0)


def warp_labels(labels: sitk.Image, reference: sitk.Image, displacement: sitk.Image) -> sitk.Image:
    """Propagate a label map: each label's mask is resampled linearly and each voxel takes the most likely label.

    Unlike nearest-neighbour sampling, this keeps thin and small structures from breaking up.
    """
    values = np.unique(sitk.GetArrayViewFromImage(labels))
    probabilities = [sitk.GetArrayFromImage(resample(sitk.Cast(labels == int(v), sitk.sitkFloat32), reference, displacement))
                     for v in values]
    winner = values[np.argmax(np.stack(probabilities), axis=0)]
    warped = sitk.GetImageFromArray(winner.astype(sitk.GetArrayViewFromImage(labels).dtype))
    warped.CopyInformation(reference)
    return warped


def evaluate_labels(fixed_labels: sitk.Image, moving_labels: sitk.Image, warped_labels: sitk.Image) -> Dict:
    """Dice and Hausdorff of each label of the fixed labels (the reference), before and after registration."""
    before_labels = sitk.Resample(moving_labels, fixed_labels, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    values = sorted(set(np.unique(sitk.GetArrayViewFromImage(fixed_labels)).tolist()) - {0})
    before = label_scores(fixed_labels, before_labels, values)
    after = label_scores(fixed_labels, warped_labels, values)
    return {str(label): {"before": vars(before[label]), "after": vars(after[label])} for label in before}
