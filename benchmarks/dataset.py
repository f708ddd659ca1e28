"""Pairs of a dataset folder described by a manifest.json in the format of ../shared/data."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

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

    def image(self, key: str) -> sitk.Image:
        return sitk.ReadImage(str(self.folder / self.files[key]))


def load_pairs(folder: Path, dim: Optional[int] = None, limit: Optional[int] = None) -> List[Pair]:
    manifest = json.loads((folder / "manifest.json").read_text())
    pairs = []
    for entry in manifest["pairs"]:
        if dim is not None and entry["dim"] != dim:
            continue
        pairs.append(Pair(
            id=entry["id"], dim=entry["dim"], folder=folder,
            files={key: entry[key] for key in ("fixed", "moving", "fixed_labels", "moving_labels")},
            label_names={int(k): v for k, v in entry.get("label_names", manifest.get("label_names", {})).items()},
            eval_labels=list(entry["eval_labels"]),
            labelled_slices_fixed=entry.get("labelled_slices_fixed")))
    return pairs[:limit] if limit else pairs
