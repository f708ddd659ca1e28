"""The built-in sample pair (CC0 Sunnybrook data), shipped as package data for the demo and the Slicer module."""
from __future__ import annotations

from pathlib import Path
from typing import Dict

FOLDER = Path(__file__).resolve().parent


def sample_pair() -> Dict[str, Path]:
    """Paths of the sample's fixed (ES) and moving (ED) images and their label maps."""
    stem = "SCD0000101_sl05"
    return {
        "fixed": FOLDER / f"{stem}_ES.nii.gz",
        "moving": FOLDER / f"{stem}_ED.nii.gz",
        "fixed_labels": FOLDER / f"{stem}_ES_labels.nii.gz",
        "moving_labels": FOLDER / f"{stem}_ED_labels.nii.gz",
    }
