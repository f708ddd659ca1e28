"""What the propagated labels of a cine measure: each label's volume at end-diastole and end-systole, the same two
phases for every label, and its ejection fraction; against an expert's contours, Dice / HD95 per frame and the EF
on the slices the expert drew twice."""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from .metrics import label_scores


def cardiac_cycle(volumes: Dict[int, List[float]]) -> Tuple[Dict, Dict[str, Dict]]:
    """End-diastole and end-systole are moments of the heartbeat, the same for every label: the phases of the largest
    and the smallest volume of the label whose volume changes most in ml (a cavity: the myocardium's volume holds,
    and a label of a few voxels cannot lead). Then each label's volumes at those two phases, and the fraction of
    its end-diastolic volume ejected by end-systole; a label that does not shrink between them (the myocardium,
    whose wall thickens in the slices) ejects nothing and has no ejection fraction (None)."""
    leading = max(volumes, key=lambda value: max(volumes[value]) - min(volumes[value]))
    ed, es = int(np.argmax(volumes[leading])), int(np.argmin(volumes[leading]))
    labels = {}
    for value, curve in volumes.items():
        ejected = curve[ed] > curve[es]
        labels[str(value)] = {"ed_ml": round(curve[ed], 3), "es_ml": round(curve[es], 3),
                              "ef_percent": round(100.0 * (curve[ed] - curve[es]) / curve[ed], 2) if ejected else None,
                              "volumes_ml": [round(v, 3) for v in curve]}
    return {"ed_phase": ed, "es_phase": es, "label": str(leading)}, labels


def volumes_in_words(label_volumes: Dict) -> str:
    """``ED 195.8 ml, ES 153.3 ml, EF 21.7 %`` (one label's entry of :func:`cardiac_cycle`), without the EF where the
    label ejects nothing."""
    words = f"ED {label_volumes['ed_ml']:.1f} ml, ES {label_volumes['es_ml']:.1f} ml"
    return words if label_volumes["ef_percent"] is None else f"{words}, EF {label_volumes['ef_percent']:.1f} %"


def against_experts(propagated: List[sitk.Image], experts: List[sitk.Image], values: Sequence[int],
                    voxel_ml: float) -> Dict:
    """Dice / HD95 on every contoured frame (slice, phase), and per label its cycle against the expert's
    (:func:`_expert_cycle`)."""
    frames = []
    for t, (ours, theirs) in enumerate(zip(propagated, experts)):
        expert = sitk.GetArrayViewFromImage(theirs)
        for k in range(expert.shape[0]):
            present = [v for v in values if (expert[k] == v).any()]
            if present:
                scores = label_scores(theirs[:, :, k], ours[:, :, k], present)
                frames.append({"phase": t, "slice": k, **{str(v): vars(scores[v]) for v in present}})
    return {"frames": frames,
            "labels": {str(v): _expert_cycle(propagated, experts, v, voxel_ml) for v in values}}


def _expert_cycle(propagated: List[sitk.Image], experts: List[sitk.Image], value: int, voxel_ml: float) -> Dict:
    """On the slices where the expert drew ``value`` at two phases or more: the expert's and the propagated volumes
    at each slice's larger (end-diastolic) and smaller (end-systolic) contour, and the ejection fractions they
    give."""
    areas = {}
    for t, theirs in enumerate(experts):
        expert = sitk.GetArrayViewFromImage(theirs)
        for k in range(expert.shape[0]):
            if (expert[k] == value).any():
                areas.setdefault(k, []).append((float((expert[k] == value).sum() * voxel_ml), t))
    paired = {k: sorted(found) for k, found in areas.items() if len(found) >= 2}
    volume = lambda image, k: float((sitk.GetArrayViewFromImage(image)[k] == value).sum() * voxel_ml)
    expert_ed, expert_es = (sum(found[i][0] for found in paired.values()) for i in (-1, 0))
    ours_ed, ours_es = (sum(volume(propagated[found[i][1]], k) for k, found in paired.items()) for i in (-1, 0))
    ejection = lambda ed, es: round(100.0 * (ed - es) / ed, 2) if ed > 0 else None
    return {"slices": sorted(paired),
            "ed_phase_per_slice": {str(k): found[-1][1] for k, found in sorted(paired.items())},
            "es_phase_per_slice": {str(k): found[0][1] for k, found in sorted(paired.items())},
            "expert": {"ed_ml": round(expert_ed, 3), "es_ml": round(expert_es, 3),
                       "ef_percent": ejection(expert_ed, expert_es)},
            "propagated": {"ed_ml": round(ours_ed, 3), "es_ml": round(ours_es, 3),
                           "ef_percent": ejection(ours_ed, ours_es)}}
