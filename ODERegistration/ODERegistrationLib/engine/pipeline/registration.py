"""Register two SimpleITK images: geometry in, physical displacement fields and QA measures out.

The moving image is first resampled onto the fixed grid (origin, spacing, direction), so every field the
optimizer fits lives on the fixed grid. Outputs are ITK displacement fields in LPS millimetres:

- forward: resamples moving onto fixed, ``warped(x) = moving(x + U_F(x))``;
- backward: resamples fixed onto moving, ``fixed(y + U_B(y))``; it maps moving-space points to fixed-space points.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk
import torch

from .. import __version__
from ..core.device import (DeviceError, choose_device, cpu_threads, is_out_of_memory, out_of_memory_message,
                           unsupported_operation_message)
from ..core.fields import clear_identity_grid_cache, compose, refine_inverse, smooth_folds
from ..core.optimizer import FieldPair, optimize_fields
from ..parameters import RegistrationParameters
from ..progress import CancelCheck, ProgressCallback, RegistrationCancelled
from .layout import TensorLayout, choose_layout
from .metrics import folding, index_to_physical_matrix, jacobian_determinant, label_scores
from .region import Region, embed_displacement, region_around_mask, region_from_corners, whole_region
from .through_plane import fit_through_plane_then_slices, fits_through_plane
from .validation import InputError, check_image, check_labels, check_pair


@dataclass
class RegistrationResult:
    forward: sitk.Image
    """Displacement field on the fixed grid (LPS mm); resamples moving onto fixed."""
    backward: sitk.Image
    """Displacement field on the fixed grid (LPS mm); resamples fixed onto moving."""
    jacobian: sitk.Image
    """det J of the forward map, on the fixed grid."""
    inverse_jacobian: sitk.Image
    """det J of the backward map, on the fixed grid (where it is defined)."""
    round_trip_mm: np.ndarray
    """|x - D_B(D_F(x))| at each voxel of the fixed grid (array order), in mm: how far the inverse is from one."""
    fixed: sitk.Image
    """The fixed image as given."""
    moving: sitk.Image
    """The moving image in float: with ``fixed``, what the warped images are resampled from."""
    stacks: int = 1
    """Stacks held one after another along k (a cine's phases): nothing is resampled from one into the next."""
    warped_labels: Optional[sitk.Image] = None
    report: Dict = field(default_factory=dict)

    @cached_property
    def warped(self) -> sitk.Image:
        """Moving resampled onto the fixed grid through ``forward`` (made on first use: a cine needs only its
        labels)."""
        return stackwise(self.stacks, resample, self.moving, self.fixed, self.forward)

    @cached_property
    def inverse_warped(self) -> sitk.Image:
        """Fixed resampled onto the moving grid through ``backward``."""
        return stackwise(self.stacks, resample, sitk.Cast(self.fixed, sitk.sitkFloat32), self.moving, self.backward)

    def resample_warped_now(self) -> None:
        """Make :attr:`warped` at once rather than on first use: a caller that runs the engine on a worker thread
        and fills nodes on the main one (the Slicer logic) does the resampling on the worker."""
        self.warped  # noqa: B018 (the cached property keeps what it makes)


def register_images(fixed: sitk.Image, moving: sitk.Image,
                    parameters: RegistrationParameters = RegistrationParameters(),
                    moving_labels: Optional[sitk.Image] = None, fixed_labels: Optional[sitk.Image] = None,
                    progress: ProgressCallback = None, cancel: CancelCheck = None,
                    names: Optional[Dict[str, str]] = None, fixed_mask: Optional[sitk.Image] = None,
                    moving_mask: Optional[sitk.Image] = None,
                    region_corners: Optional[Sequence[Sequence[float]]] = None, stacks: int = 1) -> RegistrationResult:
    """Run the registration on images with physical geometry; ``names`` label inputs in error messages.

    ``fixed_mask`` / ``moving_mask`` (label maps on their image's grid; nonzero = inside) restrict the similarity.
    ``region_corners`` (physical LPS points, such as a box's corners) fit the map in the box of the fixed grid that
    covers them; otherwise ``parameters.region`` decides (see region.py).
    ``stacks`` > 1: both images (on one grid) hold that many stacks of equal depth one after another along k, a
    cine's phases in one batch; each gets its own through-plane map, and resampling and Jacobians stay inside it.
    """
    names = {"fixed": "fixed image", "moving": "moving image", "fixed_labels": "fixed labels",
             "moving_labels": "moving labels", "fixed_mask": "fixed mask", "moving_mask": "moving mask",
             "region_corners": "region box", **(names or {})}
    check_pair(fixed, moving, names["fixed"], names["moving"])
    if fixed_labels is not None and moving_labels is None:
        raise InputError(f"{names['fixed_labels']}: fixed labels only score the propagated moving labels; give the "
                         "moving labels too, or leave the fixed labels out")
    fixed_array = check_image(fixed, names["fixed"])
    check_image(moving, names["moving"])
    for key, labels, image in (("moving_labels", moving_labels, "moving"), ("fixed_labels", fixed_labels, "fixed"),
                               ("fixed_mask", fixed_mask, "fixed"), ("moving_mask", moving_mask, "moving")):
        if labels is not None:
            check_labels(labels, fixed if image == "fixed" else moving, names[key], names[image])
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    moving_on_fixed = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, sitk.Transform(), sitk.sitkLinear, 0.0))
    if np.ptp(moving_on_fixed) == 0:
        raise InputError(f"{names['moving']}: does not overlap {names['fixed']} in physical space "
                         "(check origins and directions, or align them first)")
    labelled_on_fixed = None if moving_labels is None else sitk.GetArrayFromImage(
        sitk.Resample(moving_labels, fixed, sitk.Transform(), sitk.sitkNearestNeighbor, 0)) != 0
    _check_label_content(moving_labels, labelled_on_fixed, fixed_labels, names)
    fixed_weight = _mask_on(fixed_mask, fixed, names["fixed_mask"])
    support = _support_on(moving, fixed)
    moving_weight = _mask_on(moving_mask, fixed, names["moving_mask"]) * support

    region = _choose_region(parameters, fixed, fixed_array.shape, moving_labels, fixed_mask, moving_mask,
                            region_corners, names)
    masks = {"fixed_mask": (fixed_mask, fixed_weight), "moving_mask": (moving_mask, moving_weight)}
    _check_region_content(region, names, {"fixed": fixed_array, "moving": moving_on_fixed}, masks)
    if stacks > 1 and region.shape[0] != fixed_array.shape[0]:
        raise ValueError(f"a batch of {stacks} stacks is fitted over its whole depth, not over slices "
                         f"{region.start[0]} to {region.stop[0] - 1}")
    layout = dataclasses.replace(choose_layout(parameters.mode, fixed_array.shape, fixed.GetSpacing()[::-1]),
                                 stacks=stacks)
    input_warnings = _maskless_slices_warnings(layout, region, names, masks)
    if region_corners is not None:
        input_warnings += _labels_outside_box_warning(region, labelled_on_fixed, names)
    device = choose_device(parameters.device)
    start = time.perf_counter()
    with _device_errors_in_one_line(device, fixed_array.shape), cpu_threads(parameters.threads) as threads:
        fields, forward_voxels, backward_voxels, round_trip, fade_mm = _fit_in_region(
            fixed_array, moving_on_fixed, (fixed_weight, moving_weight), region, layout, fixed.GetSpacing()[::-1],
            parameters, device, progress, cancel)
    seconds = time.perf_counter() - start
    _stop_if_cancelled(cancel)  # the outputs below take seconds on large grids (a whole cine's batch)

    forward, backward = (displacement_image(voxels, fixed) for voxels in (forward_voxels, backward_voxels))
    determinant, inverse_determinant = (stackwise(stacks, jacobian_determinant, field) for field in (forward, backward))
    jacobian, inverse_jacobian = (sitk.GetImageFromArray(array.astype(np.float32))
                                  for array in (determinant, inverse_determinant))
    jacobian.CopyInformation(fixed)
    inverse_jacobian.CopyInformation(fixed)
    round_trip_mm = np.linalg.norm(sitk.GetArrayFromImage(displacement_image(round_trip, fixed)), axis=-1)

    _stop_if_cancelled(cancel)
    fold, inverse_fold = folding(determinant), folding(inverse_determinant)
    overlap = float(support.mean())
    warnings = input_warnings + _fit_warnings(fields, region, fixed, parameters, overlap, device, threads, names)
    report = {
        "seconds": round(seconds, 3),
        "iterations": fields.iterations_run,
        "final_loss": fields.final_loss,
        "similarity": {"start": fields.similarity_start, "end": fields.similarity_end},
        "device": str(device),
        "mode": layout.mode,
        "through_plane": None if fields.earlier is None else {
            "iterations": fields.earlier.iterations_run,
            "similarity": {"start": fields.earlier.similarity_start, "end": fields.earlier.similarity_end}},
        "region": {**region.describe(fixed), "fade_mm": round(fade_mm, 2)},
        "overlap_fraction": round(overlap, 4),
        "folded_voxels": fold.folded_voxels,
        "folded_fraction": fold.folded_fraction,
        "min_jacobian": fold.min_jacobian,
        "max_jacobian": float(determinant.max()),
        "inverse_folded_voxels": inverse_fold.folded_voxels,
        "inverse_min_jacobian": inverse_fold.min_jacobian,
        "inverse_consistency_mm": float(round_trip_mm.mean()),
        "inverse_consistency_max_mm": float(round_trip_mm.max()),
        "warnings": warnings,
        "parameters": parameters.replace(threads=threads).as_dict(),
        "versions": {"oderegistration": __version__, "torch": torch.__version__, "SimpleITK": sitk.Version_VersionString(),
                     "python": platform.python_version()},
    }
    result = RegistrationResult(forward, backward, jacobian, inverse_jacobian, round_trip_mm, fixed, moving, stacks,
                                report=report)
    _stop_if_cancelled(cancel)
    if moving_labels is not None:
        result.warped_labels = stackwise(stacks, warp_labels, moving_labels, fixed, forward)
        warnings.extend(_unmoved_labels_warning(result.warped_labels, forward, fixed,
                                                fitted_around_labels=region.source == names["moving_labels"]))
        if fixed_labels is not None:
            report["labels"] = evaluate_labels(fixed_labels, moving_labels, result.warped_labels)
            warnings.extend(_unpaired_labels_warning(fixed_labels, moving_labels, names))
    return result


def _fit_in_region(fixed_array: np.ndarray, moving_array: np.ndarray, weights, region: Region,
                   layout: TensorLayout, spacing, parameters: RegistrationParameters, device: torch.device,
                   progress: ProgressCallback, cancel: CancelCheck):
    """Fit both maps inside the region, continue them over the whole grid (voxel units) and refine the inverse on
    that grid, the one it is written on; returns the optimizer's result, both whole fields, their round trip and
    the fade length. A region that is the whole image is fitted with ``similarity_whole_image``."""
    inside = layout.cropped(region.shape)
    fixed_crop, moving_crop = (normalize_intensities(array[region.slices]) for array in (fixed_array, moving_array))
    masks = None
    if min(weight[region.slices].min() for weight in weights) < 1:
        masks = tuple(weight[region.slices] for weight in weights)
    in_region = not region.is_whole(fixed_array.shape)
    if not in_region:
        parameters = parameters.replace(similarity=parameters.similarity_whole_image)
    if fits_through_plane(inside, parameters, in_region):
        fields, inside = fit_through_plane_then_slices(fixed_crop, moving_crop, masks, inside, parameters, device,
                                                       progress, cancel)
    else:
        fields = optimize_fields(inside.to_tensor(fixed_crop, device), inside.to_tensor(moving_crop, device),
                                 inside.spacing, parameters, progress, cancel,
                                 None if masks is None else tuple(inside.to_tensor(mask, device) for mask in masks))
    layout = inside.cropped(layout.array_shape)  # a stack's maps are 3-D once its through-plane map is in them
    (forward_voxels, fade_mm), (backward_voxels, _) = (
        embed_displacement(inside.to_voxel_displacement(field), region, fixed_array.shape, spacing)
        for field in (fields.forward, fields.backward))
    forward, backward = (layout.from_voxel_displacement(voxels, device) for voxels in (forward_voxels, backward_voxels))
    forward, forward_voxels = _without_folds(forward, forward_voxels, layout)
    if parameters.inverse_refinement_steps > 0:
        backward = refine_inverse(forward, backward, parameters.inverse_refinement_steps)
        backward_voxels = layout.to_voxel_displacement(backward)
    backward, backward_voxels = _without_folds(backward, backward_voxels, layout)
    round_trip = layout.to_voxel_displacement(compose(backward, forward))
    return fields, forward_voxels, backward_voxels, round_trip, fade_mm


@contextmanager
def _device_errors_in_one_line(device: torch.device, shape: Tuple[int, ...]) -> Iterator[None]:
    """Memory running out, or an operation a GPU backend lacks, as a DeviceError that says what to do; the identity
    grids cached for the fit are let go however it ends."""
    try:
        yield
    except NotImplementedError as error:
        if device.type == "cpu":
            raise
        raise DeviceError(unsupported_operation_message(device, error)) from error
    except (RuntimeError, MemoryError) as error:
        if is_out_of_memory(error):
            raise DeviceError(out_of_memory_message(device, shape)) from error
        raise
    finally:
        clear_identity_grid_cache()


def _fit_warnings(fields: FieldPair, region: Region, fixed: sitk.Image, parameters: RegistrationParameters,
                  overlap: float, device: torch.device, threads: int, names: Dict[str, str]) -> List[str]:
    """What the user should know about a fit that ran: it stayed at the identity, its region or the moving image's
    share of the view is too small to deform, or it ran on more threads than cores."""
    warnings = []
    if not fields.similarity_improved:
        warnings.append(f"the similarity did not improve ({fields.similarity_start:.4g} -> "
                        f"{fields.similarity_end:.4g} after {fields.iterations_run} iterations): the map is close to "
                        "the identity; check the inputs or raise the learning rate")
    extent_mm = max(n * s for n, s in zip(region.shape, fixed.GetSpacing()[::-1]))
    if extent_mm < SMALLEST_REGION_IN_SIGMAS * parameters.smoothing_sigma_mm:
        warnings.append(f"the region is only {extent_mm:.3g} mm across, less than {SMALLEST_REGION_IN_SIGMAS:g} times "
                        f"the velocity smoothing ({parameters.smoothing_sigma_mm:g} mm), so the map can hardly "
                        "deform: check that the images' spacing is in millimetres")
    if overlap < LOW_OVERLAP:
        warnings.append(f"{names['moving']} covers only {overlap * 100:.2g}% of {names['fixed']}'s field of view; "
                        "the map is fitted where both have data")
    if device.type == "cpu" and threads > (os.cpu_count() or threads):
        warnings.append(f"the fit ran on {threads} CPU threads, more than this machine's {os.cpu_count()} cores, which "
                        "only slows it down (--threads 0 uses every core)")
    return warnings


def _check_label_content(moving_labels: Optional[sitk.Image], labelled_on_fixed: Optional[np.ndarray],
                         fixed_labels: Optional[sitk.Image], names: Dict[str, str]) -> None:
    """Refuse, before any work, an empty label map, and moving labels none of which lies in the fixed image's field
    of view (the region would be a sliver of margin and the propagated labels empty)."""
    for key, labels, purpose in (("moving_labels", moving_labels, "propagate"),
                                 ("fixed_labels", fixed_labels, "score")):
        if labels is not None and not sitk.GetArrayViewFromImage(labels).any():
            raise InputError(f"{names[key]}: is empty (no nonzero voxel), so there is nothing to {purpose}")
    if labelled_on_fixed is not None and not labelled_on_fixed.any():
        raise InputError(f"{names['moving_labels']}: no label lies inside the field of view of {names['fixed']}, so "
                         "none can be propagated onto it (check that the images show the same anatomy)")


def _labels_outside_box_warning(region: Region, labelled_on_fixed: Optional[np.ndarray],
                                names: Dict[str, str]) -> List[str]:
    """A box given by hand that leaves moving labels out: the map is fitted inside it, so those labels move only
    with its continuation towards the identity. A box typed in Slicer's RAS coordinates instead of LPS lands
    mirrored, and off the labels."""
    if labelled_on_fixed is None:
        return []
    share = labelled_on_fixed[region.slices].sum() / labelled_on_fixed.sum()
    if share == 1.0:
        return []
    return [f"{names['region_corners']}: holds {share:.0%} of {names['moving_labels']}; outside the box they move "
            "only with the map's continuation to the identity, so give a box around them (corners typed by hand are "
            "LPS mm: Slicer shows RAS, whose x and y are negated), or the automatic region"]


def _check_region_content(region: Region, names: Dict[str, str], images: Dict[str, np.ndarray],
                          masks: Dict[str, Tuple[Optional[sitk.Image], np.ndarray]]) -> None:
    """Refuse, before any work, a region where an image (on the fixed grid) is constant, whose intensities would
    normalize to NaN, or where a given mask (its weight on the fixed grid) has no voxel, so nothing is compared."""
    where = (f"the region ({region.source}, voxels {list(region.start[::-1])} to "
             f"{[b - 1 for b in region.stop[::-1]]})")
    for key, array in images.items():
        inside = array[region.slices]
        if np.ptp(inside) == 0:
            raise InputError(f"{names[key]}: is constant (every voxel {float(inside.flat[0]):g}) inside {where}; "
                             "there is nothing to register there")
    for key, (mask, weight) in masks.items():
        if mask is not None and not weight[region.slices].any():
            raise InputError(f"{names[key]}: has no voxel inside {where}, so no voxel would be compared")


def _maskless_slices_warnings(layout: TensorLayout, region: Region, names: Dict[str, str],
                              masks: Dict[str, Tuple[Optional[sitk.Image], np.ndarray]]) -> List[str]:
    """Slices of a stack registered slice by slice on which a given mask has no voxel: the similarity compares
    nothing there, so their in-plane maps stay at the identity."""
    if layout.mode != "slices":
        return []
    warnings = []
    for key, (mask, weight) in masks.items():
        if mask is None:
            continue
        planes = np.moveaxis(weight[region.slices] > 0, layout.slice_axis, 0)
        empty = [region.start[layout.slice_axis] + k for k, plane in enumerate(planes) if not plane.any()]
        if empty:
            warnings.append(f"{names[key]}: has no voxel on slice(s) {', '.join(map(str, empty))} of the region; "
                            "the similarity compares nothing there, so those slices are not registered in-plane")
    return warnings


def _unmoved_labels_warning(warped_labels: sitk.Image, forward: sitk.Image, fixed: sitk.Image,
                            fitted_around_labels: bool) -> List[str]:
    """A warning when the map moves the propagated labels by less than half a voxel: the similarity may have
    improved elsewhere (a whole image's thorax, a box beside the heart) while the labels stayed where they were.
    Fitting the region around them is advice only for a run that did not."""
    inside = sitk.GetArrayViewFromImage(warped_labels) != 0
    moved_mm = float(np.linalg.norm(sitk.GetArrayViewFromImage(forward)[inside], axis=-1).max(initial=0.0))
    if moved_mm >= 0.5 * min(fixed.GetSpacing()):
        return []
    advice = "raise the learning rate" if fitted_around_labels else "fit the region around the labels (--roi auto)"
    return [f"the map moves the labels by at most {moved_mm:.2g} mm, less than half a voxel: they are propagated "
            f"essentially unregistered; check the inputs, or {advice}"]


def _without_folds(field: torch.Tensor, voxels: np.ndarray, layout: TensorLayout):
    """:func:`smooth_folds` on a field held both as a tensor and in voxel units; a field without folds comes back
    as it was, bit for bit."""
    smoothed = smooth_folds(field)
    if smoothed is field:
        return field, voxels
    return smoothed, layout.to_voxel_displacement(smoothed)


def _stop_if_cancelled(cancel: CancelCheck) -> None:
    if cancel is not None and cancel():
        raise RegistrationCancelled("cancelled while the outputs were being made")


LOW_OVERLAP = 0.5
"""Below this fraction of the fixed field of view covered by the moving image, the report warns."""
SMALLEST_REGION_IN_SIGMAS = 4.0
"""A region less than this many velocity smoothing sigmas across can hardly deform: the report warns, since the
likely cause is a header whose spacing is not in millimetres (metres, for example), which every parameter in
millimetres assumes."""


def _choose_region(parameters: RegistrationParameters, fixed: sitk.Image, shape, moving_labels, fixed_mask,
                   moving_mask, region_corners, names: Dict[str, str]) -> Region:
    """An explicit box wins; ``auto`` uses the moving labels, else the fixed mask, else the moving mask."""
    if region_corners is not None:
        return region_from_corners(region_corners, fixed, names["region_corners"])
    if parameters.region == "auto":
        for key, image in (("moving_labels", moving_labels), ("fixed_mask", fixed_mask), ("moving_mask", moving_mask)):
            if image is not None:
                return region_around_mask(image, fixed, parameters.region_margin_mm, names[key])
    return whole_region(shape)


def _mask_on(mask: Optional[sitk.Image], reference: sitk.Image, name: str) -> np.ndarray:
    """A mask (nonzero = inside) as 0/1 floats on the reference grid; all ones without a mask."""
    if mask is None:
        return np.ones(sitk.GetArrayViewFromImage(reference).shape, np.float32)
    array = sitk.GetArrayFromImage(sitk.Resample(sitk.Cast(mask != 0, sitk.sitkUInt8), reference, sitk.Transform(),
                                                 sitk.sitkNearestNeighbor, 0)).astype(np.float32)
    if not array.any():
        raise InputError(f"{name}: is empty (no nonzero voxel) where it lies on the fixed image")
    return array


def _support_on(image: sitk.Image, reference: sitk.Image) -> np.ndarray:
    """Where ``image`` has data on the reference grid (1 inside its field of view, 0 outside, linear at the edge)."""
    ones = sitk.Image(image.GetSize(), sitk.sitkFloat32) + 1.0
    ones.CopyInformation(image)
    return sitk.GetArrayFromImage(sitk.Resample(ones, reference, sitk.Transform(), sitk.sitkLinear, 0.0))


def normalize_intensities(array: np.ndarray) -> np.ndarray:
    """Map the 0.5-99.5 percentile range to [0, 1] and clip, so similarity terms see comparable contrast."""
    low, high = np.percentile(array, [0.5, 99.5])
    if high <= low:
        low, high = float(array.min()), float(array.max())
    return np.clip((array - low) / (high - low), 0.0, 1.0).astype(np.float32)


def displacement_image(voxels: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """Voxel displacement (*array_shape, dim), components i, j[, k] -> ITK displacement field (LPS mm vectors) on
    the reference grid."""
    physical = voxels @ index_to_physical_matrix(reference).T
    image = sitk.GetImageFromArray(physical, isVector=True)
    image.CopyInformation(reference)
    return image


def stackwise(stacks: int, function: Callable[..., Union[sitk.Image, np.ndarray]],
              *images: sitk.Image) -> Union[sitk.Image, np.ndarray]:
    """``function`` of images on one grid, applied to each of the ``stacks`` stacks they hold along k and joined
    along k: no resampling or derivative reaches from one stack (a cine's phase) into the next."""
    if stacks == 1:
        return function(*images)
    depth = images[0].GetSize()[2] // stacks
    parts = [function(*(image[:, :, s * depth:(s + 1) * depth] for image in images)) for s in range(stacks)]
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    joined = sitk.GetImageFromArray(np.concatenate([sitk.GetArrayViewFromImage(part) for part in parts]),
                                    isVector=parts[0].GetNumberOfComponentsPerPixel() > 1)
    joined.CopyInformation(images[0])
    return joined


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


def _unpaired_labels_warning(fixed_labels: sitk.Image, moving_labels: sitk.Image, names: Dict[str, str]) -> List[str]:
    """A warning for labels of the fixed map that the moving map lacks: each label is scored against the same
    value, so they score Dice 0 (two numbering conventions, or a file of another pair, would give Dice 0 for
    everything without a word). Moving labels the fixed map lacks are common (an expert drew fewer structures
    there) and are simply not scored."""
    fixed_values, moving_values = ({int(v) for v in np.unique(sitk.GetArrayViewFromImage(labels))} - {0}
                                   for labels in (fixed_labels, moving_labels))
    unpaired = sorted(fixed_values - moving_values)
    if not unpaired:
        return []
    return [f"label(s) {', '.join(map(str, unpaired))} of {names['fixed_labels']} are not in "
            f"{names['moving_labels']}, so they score Dice 0: each label is scored against the same value"]


def evaluate_labels(fixed_labels: sitk.Image, moving_labels: sitk.Image, warped_labels: sitk.Image) -> Dict:
    """Dice and Hausdorff of each label of the fixed labels (the reference), before and after registration."""
    before_labels = sitk.Resample(moving_labels, fixed_labels, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    values = sorted(set(np.unique(sitk.GetArrayViewFromImage(fixed_labels)).tolist()) - {0})
    before = label_scores(fixed_labels, before_labels, values)
    after = label_scores(fixed_labels, warped_labels, values)
    return {str(label): {"before": vars(before[label]), "after": vars(after[label])} for label in before}
