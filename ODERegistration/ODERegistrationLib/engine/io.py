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


EXTRA_FILES = ("qa.png", "report.json")
"""Written beside the images; a re-run removes every file of both lists that it does not write itself."""


def check_output_dir(output_dir: str | os.PathLike) -> Path:
    """Refuse an output folder that cannot be written, before any work is done."""
    if not str(output_dir).strip():
        raise InputError("output folder: the path is empty")
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise InputError(f"output folder {path}: is a file, not a folder")
    parent = next((p for p in [path, *path.parents] if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"output folder {path}: {parent} cannot be written to")
    return path


def write_result(result: RegistrationResult, output_dir: str | os.PathLike,
                 write_extras: Optional[Callable[[Path], None]] = None) -> Path:
    """Write every output into ``output_dir``, all at once: files go to a staging folder first and are moved in
    only when all of them were written, so an error never leaves a directory that looks complete, and outputs of
    an earlier run that this one does not write are removed, so the folder never mixes two runs."""
    output_dir = check_output_dir(output_dir)
    try:
        output_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"output folder {output_dir}: cannot be created ({error.strerror})") from None
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
        written = {path.name for path in staging.iterdir()}
        for stale in set(OUTPUT_FILES.values()).union(EXTRA_FILES) - written:
            (output_dir / stale).unlink(missing_ok=True)
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
