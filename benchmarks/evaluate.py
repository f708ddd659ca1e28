"""Score one method on one pair with the project's own metric code; runs in a fresh process per task."""
from __future__ import annotations

import math
import resource
from typing import Dict, List

import numpy as np
import SimpleITK as sitk

from ODERegistrationLib.engine.pipeline.metrics import folding, index_to_physical_matrix, jacobian_determinant, label_scores
from ODERegistrationLib.engine.pipeline.region import embed_displacement, region_around_mask
from ODERegistrationLib.engine.pipeline.registration import displacement_image, warp_labels

from .dataset import Pair
from .methods import METHODS, Method, MethodOutput


def evaluate(pair: Pair, method_name: str, options: dict) -> List[Dict]:
    """One row per evaluated label: Dice/HD before and after, folding, inverse consistency, time, peak memory."""
    images = _scored_images(pair)
    output = run_in_region(METHODS[method_name], images["fixed"], pair.image("moving"), images["moving_labels"],
                           options)
    return _score(pair, images, method_name, options, output,
                  resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)


def failed(pair: Pair, method_name: str, options: dict, error: BaseException) -> List[Dict]:
    """The rows of a run that raised, or whose worker died: the pair stays unregistered for that method, as its
    user would be left, and the rows say why (``failure``)."""
    images = _scored_images(pair)
    fixed = images["fixed"]
    identity = displacement_image(np.zeros(sitk.GetArrayViewFromImage(fixed).shape + (fixed.GetDimension(),)), fixed)
    return _score(pair, images, method_name, options, MethodOutput(identity, None, math.nan), math.nan,
                  failure_reason(error))


def failure_reason(error: BaseException) -> str:
    """The error in one short line, for the table and the console."""
    return f"{type(error).__name__}: {error}".splitlines()[0][:200]


def _scored_images(pair: Pair) -> Dict[str, sitk.Image]:
    """The images scoring needs, each read (and resampled) once."""
    return {key: pair.image(key) for key in ("fixed", "fixed_labels", "moving_labels")}


def _score(pair: Pair, images: Dict[str, sitk.Image], method_name: str, options: dict, output: MethodOutput,
           peak_mb: float, failure: str = "") -> List[Dict]:
    fixed, fixed_labels, moving_labels = images["fixed"], images["fixed_labels"], images["moving_labels"]
    warped = warp_labels(moving_labels, fixed, output.forward)
    unregistered = sitk.Resample(moving_labels, fixed, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    if pair.labelled_slices_fixed is not None:  # unlabelled slices are unknown, not background
        warped, unregistered = (_keep_slices(image, pair.labelled_slices_fixed) for image in (warped, unregistered))
    before = label_scores(fixed_labels, unregistered, pair.eval_labels)
    after = label_scores(fixed_labels, warped, pair.eval_labels)
    fold = folding(jacobian_determinant(output.forward))
    inverse_folds = folding(jacobian_determinant(output.backward)).folded_voxels if output.backward else math.nan
    suffix = "+roi" if options["region"] == "auto" else ""
    common = {
        "pair": pair.id, "method": method_name + suffix, "seconds": output.seconds, "peak_rss_mb": peak_mb,
        "folded_voxels": fold.folded_voxels, "folded_fraction": fold.folded_fraction, "min_jacobian": fold.min_jacobian,
        "inverse_folded_voxels": inverse_folds,
        "inverse_consistency_mm": _round_trip_mm(output.forward, output.backward), "failure": failure,
    }
    rows = []
    for label in pair.eval_labels:
        if label not in after:
            continue
        rows.append({**common, "label": label, "label_name": pair.label_names.get(label, str(label)),
                     "dice_before": before[label].dice, "dice_after": after[label].dice,
                     "hausdorff_mm_before": before[label].hausdorff_mm, "hausdorff_mm_after": after[label].hausdorff_mm,
                     "hausdorff95_mm_before": before[label].hausdorff95_mm,
                     "hausdorff95_mm_after": after[label].hausdorff95_mm})
    return rows


def run_in_region(method: Method, fixed: sitk.Image, moving: sitk.Image, moving_labels: sitk.Image,
                  options: dict) -> MethodOutput:
    """Run a method on the whole pair, or (region ``auto``) on the box around the moving labels that the engine
    would choose: the peers get the cropped pair and their fields are continued outside the box exactly as the
    engine continues its own; the engine gets the labels and crops itself."""
    if options["region"] != "auto":
        return method.run(fixed, moving, options)
    if method.name == "ode":
        return method.run(fixed, moving, {**options, "moving_labels": moving_labels})
    region = region_around_mask(moving_labels, fixed, options["ode_parameters"].region_margin_mm, "moving labels")
    box = [slice(a, b) for a, b in zip(region.start[::-1], region.stop[::-1])]  # SimpleITK slices in i, j, k order
    fixed_box = fixed[tuple(box)]
    moving_box = sitk.Resample(moving, fixed_box, sitk.Transform(), sitk.sitkLinear, 0.0, moving.GetPixelID())
    output = method.run(fixed_box, moving_box, options)
    whole = [_embed(field, region, fixed) if field is not None else None for field in (output.forward, output.backward)]
    return MethodOutput(whole[0], whole[1], output.seconds)


def _embed(field: sitk.Image, region, reference: sitk.Image) -> sitk.Image:
    to_voxels = np.linalg.inv(index_to_physical_matrix(reference)).T
    voxels = sitk.GetArrayFromImage(field).astype(np.float64) @ to_voxels
    whole, _ = embed_displacement(voxels, region, sitk.GetArrayViewFromImage(reference).shape,
                                  reference.GetSpacing()[::-1])
    return displacement_image(whole, reference)


def _keep_slices(labels: sitk.Image, slices: List[int]) -> sitk.Image:
    array = sitk.GetArrayFromImage(labels)
    mask = np.zeros(array.shape[0], bool)
    mask[slices] = True
    array[~mask] = 0
    kept = sitk.GetImageFromArray(array)
    kept.CopyInformation(labels)
    return kept


def _round_trip_mm(forward: sitk.Image, backward) -> float:
    """Mean |x - D_B(D_F(x))| in mm over the fixed grid; NaN for a method without an inverse."""
    if backward is None:
        return float("nan")
    backward_at_forward = sitk.Resample(backward, forward, sitk.DisplacementFieldTransform(sitk.Image(forward)),
                                        sitk.sitkLinear, 0.0, sitk.sitkVectorFloat64)
    error = sitk.GetArrayFromImage(forward) + sitk.GetArrayFromImage(backward_at_forward)
    return float(np.linalg.norm(error, axis=-1).mean())
