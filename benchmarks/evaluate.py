"""Score one method on one pair with the project's own metric code; runs in a fresh process per task."""
from __future__ import annotations

import resource
from typing import Dict, List

import numpy as np
import SimpleITK as sitk

from ODERegistrationLib.engine.metrics import folding, jacobian_determinant, label_scores
from ODERegistrationLib.engine.registration import warp_labels

from .dataset import Pair
from .methods import METHODS


def evaluate(pair: Pair, method_name: str, options: dict) -> List[Dict]:
    """One row per evaluated label: Dice/HD before and after, folding, inverse consistency, time, peak memory."""
    fixed, moving = pair.image("fixed"), pair.image("moving")
    fixed_labels, moving_labels = pair.image("fixed_labels"), pair.image("moving_labels")
    output = METHODS[method_name].run(fixed, moving, options)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    warped = warp_labels(moving_labels, fixed, output.forward)
    unregistered = sitk.Resample(moving_labels, fixed, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    if pair.labelled_slices_fixed is not None:  # unlabelled slices are unknown, not background
        warped, unregistered = (_keep_slices(image, pair.labelled_slices_fixed) for image in (warped, unregistered))
    before = label_scores(fixed_labels, unregistered, pair.eval_labels)
    after = label_scores(fixed_labels, warped, pair.eval_labels)
    fold = folding(jacobian_determinant(output.forward))
    common = {
        "pair": pair.id, "method": method_name, "seconds": output.seconds, "peak_rss_mb": peak_mb,
        "folded_voxels": fold.folded_voxels, "folded_fraction": fold.folded_fraction, "min_jacobian": fold.min_jacobian,
        "inverse_consistency_mm": _round_trip_mm(output.forward, output.backward),
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
