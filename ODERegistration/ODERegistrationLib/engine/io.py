"""Reading inputs with clear errors, and writing a result directory that is complete or absent."""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Optional

import SimpleITK as sitk

from .registration import RegistrationResult
from .validation import InputError

OUTPUT_FILES = {
    "forward": "displacement.nii.gz",
    "backward": "inverse_displacement.nii.gz",
    "warped": "warped.nii.gz",
    "inverse_warped": "inverse_warped.nii.gz",
    "jacobian": "jacobian.nii.gz",
    "warped_labels": "warped_labels.nii.gz",
}


def read_image(path: str | os.PathLike, name: str) -> sitk.Image:
    """Read any file SimpleITK reads; a missing or unreadable file is an InputError naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{name} {path}: no such file")
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as error:
        reason = next((line.strip() for line in str(error).splitlines() if "Unable" in line or "unable" in line),
                      "not an image format SimpleITK can read")
        raise InputError(f"{name} {path}: cannot be read ({reason})") from None


def write_result(result: RegistrationResult, output_dir: str | os.PathLike,
                 write_extras: Optional[Callable[[Path], None]] = None) -> Path:
    """Write every output into ``output_dir``, all at once: files go to a staging folder first and are moved in
    only when all of them were written, so an error never leaves a directory that looks complete."""
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        for attribute, filename in OUTPUT_FILES.items():
            image = getattr(result, attribute)
            if image is not None:
                sitk.WriteImage(image, str(staging / filename), useCompression=True)
        if write_extras is not None:
            write_extras(staging)
        (staging / "report.json").write_text(json.dumps(_json_safe(result.report), indent=2) + "\n")
        output_dir.mkdir(exist_ok=True)
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
