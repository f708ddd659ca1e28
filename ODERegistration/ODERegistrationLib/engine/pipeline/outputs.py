"""Writing a result folder that is complete or absent, and refusing folders a run would mix up."""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Dict, Optional

import SimpleITK as sitk

from .registration import RegistrationResult
from .cine import Cine
from .sequence import SequenceResult
from .validation import InputError

OUTPUT_FILES = {
    "forward": "displacement.nii.gz",
    "backward": "inverse_displacement.nii.gz",
    "warped": "warped.nii.gz",
    "inverse_warped": "inverse_warped.nii.gz",
    "jacobian": "jacobian.nii.gz",
    "warped_labels": "warped_labels.nii.gz",
}


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


def refuse_inputs_among_outputs(output_dir: Path, inputs: Dict[str, str], is_output: Callable[[str], bool]) -> None:
    """Refuse, before any work is done, an input (``inputs``: name -> path) that lies in the output folder under
    the name of an output, which the run would overwrite or remove: a chained run given ``out/warped.nii.gz`` and
    ``--output-dir out``, for example; and a DICOM folder given as the output folder, which would mix the outputs
    into the series."""
    for name, given in inputs.items():
        given = Path(given)
        if given.is_dir() and given.resolve() == output_dir.resolve():
            raise InputError(f"{name} {given}: is the output folder, so the outputs would be written among its DICOM "
                             "files; choose another output folder")
        if is_output(given.name) and given.resolve().parent == output_dir.resolve():
            raise InputError(f"{name} {given}: lies in the output folder under the name of an output, so the run "
                             "would overwrite or remove it; choose another output folder")


def write_result(result: RegistrationResult, output_dir: str | os.PathLike,
                 write_extras: Optional[Callable[[Path], None]] = None) -> Path:
    """Write every output of a pair into ``output_dir``, all at once (:func:`write_folder`)."""
    def write(staging: Path) -> None:
        for attribute, filename in OUTPUT_FILES.items():
            image = getattr(result, attribute)
            if image is not None:
                sitk.WriteImage(_readable_as_written(image), str(staging / filename), useCompression=True)
        if write_extras is not None:
            write_extras(staging)
        write_report(result.report, staging)

    return write_folder(output_dir, write, is_pair_output)


def _readable_as_written(image: sitk.Image) -> sitk.Image:
    """ITK reads a vector NIfTI whose last axis holds one voxel as an image of one dimension less: the field of a
    one-slice volume (a slice saved from Slicer, a frame of a 2-D cine) came back 2-D with 3 components, which no
    reader applies to the volume. Such a field is written with its slice repeated once along that axis (the same
    displacement over one more slice), so it is read back 3-D, on the volume's geometry."""
    if image.GetNumberOfComponentsPerPixel() == 1 or image.GetDimension() != 3 or image.GetSize()[2] != 1:
        return image
    repeated = sitk.Tile([image, image], [1, 1, 2])
    repeated.SetOrigin(image.GetOrigin())
    repeated.SetSpacing(image.GetSpacing())
    repeated.SetDirection(image.GetDirection())
    return repeated


def is_pair_output(name: str) -> bool:
    """Whether a file of this name is one that ``register`` writes (or removes, as left from an earlier run)."""
    return name in OUTPUT_FILES.values() or name in EXTRA_FILES


def write_report(report: dict, folder: Path) -> None:
    (folder / "report.json").write_text(json.dumps(_json_safe(report), indent=2) + "\n")


def write_folder(output_dir: str | os.PathLike, write: Callable[[Path], None],
                 is_output: Callable[[str], bool]) -> Path:
    """Run ``write`` into a staging folder and move its files in only when all of them were written, so an error
    never leaves a directory that looks complete; files of an earlier run (``is_output`` of their name) that this
    one does not write are removed, so the folder never mixes two runs."""
    output_dir = check_output_dir(output_dir)
    try:
        output_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"output folder {output_dir}: cannot be created ({error.strerror})") from None
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        try:
            write(staging)
        except (OSError, RuntimeError) as error:  # a full disk, say; RuntimeError is how SimpleITK reports it
            if isinstance(error, RuntimeError) and "ImageFileWriter" not in str(error):
                raise
            reason = str(error).strip().splitlines()[-1]
            raise InputError(f"output folder {output_dir}: the outputs could not be written ({reason}); nothing "
                             "was written and an earlier run's files are as they were") from None
        output_dir.mkdir(exist_ok=True)
        written = {path.name for path in staging.iterdir()}
        for stale in output_dir.iterdir():
            if stale.is_file() and is_output(stale.name) and stale.name not in written:
                stale.unlink()
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


SEQUENCE_FILES = ("labels.nii.gz", "volumes.csv", "volume_curve.png", "qa.png", "report.json")
"""A sequence folder holds these and ``forward_phaseNN.nii.gz`` / ``inverse_phaseNN.nii.gz`` for every phase."""


def write_sequence(result: SequenceResult, cine: Cine, output_dir: str | os.PathLike,
                   write_extras: Optional[Callable[[Path], None]] = None) -> Path:
    """Every phase's forward and inverse fields, the propagated labels as one image in the input's layout (4-D,
    or 2-D + time, with its time axis as read), volumes.csv (no time where the cine gives none), the extras
    (pictures) and report.json, all at once (:func:`write_folder`). ``cine`` as read from its file."""
    def write(staging: Path) -> None:
        for t, (forward, backward) in enumerate(zip(result.forward, result.backward)):
            sitk.WriteImage(_readable_as_written(forward), str(staging / f"forward_phase{t:02d}.nii.gz"),
                            useCompression=True)
            sitk.WriteImage(_readable_as_written(backward), str(staging / f"inverse_phase{t:02d}.nii.gz"),
                            useCompression=True)
        origin, step = cine.time_axis
        if cine.time_axis_in_input == 3:
            labels = sitk.JoinSeries(result.labels, origin, step)
        else:  # the 2-D + time image's own geometry: its phases share its origin and orientation
            labels = sitk.JoinSeries([frame[:, :, 0] for frame in result.labels])
            labels.SetOrigin(result.labels[0].GetOrigin())
            labels.SetDirection(result.labels[0].GetDirection())
            labels.SetSpacing(result.labels[0].GetSpacing()[:2] + (step,))
        sitk.WriteImage(labels, str(staging / "labels.nii.gz"), useCompression=True)
        rows = ["phase,time_ms,label,volume_ml"] + [
            f"{t},{'' if cine.times_ms is None else f'{cine.times_ms[t]:g}'},{label},{volumes[t]:.3f}"
            for label, volumes in result.volumes_ml.items() for t in range(len(volumes))]
        (staging / "volumes.csv").write_text("\n".join(rows) + "\n")
        if write_extras is not None:
            write_extras(staging)
        write_report(result.report, staging)

    return write_folder(output_dir, write, is_sequence_output)


def is_sequence_output(name: str) -> bool:
    """Whether a file of this name is one that ``sequence`` writes (or removes, as left from an earlier run)."""
    return name in SEQUENCE_FILES or name.startswith(("forward_phase", "inverse_phase"))


def refuse_another_commands_outputs(output_dir: Path, is_output: Callable[[str], bool],
                                    is_other_output: Callable[[str], bool], other_command: str) -> None:
    """Refuse, before any work is done, a folder that holds outputs of the other command: a run removes only its
    own kind's earlier files, so a sequence's report.json would sit beside a pair's displacement.nii.gz."""
    if not output_dir.is_dir():
        return
    foreign = sorted(path.name for path in output_dir.iterdir()
                     if path.is_file() and is_other_output(path.name) and not is_output(path.name))
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise InputError(f"output folder {output_dir}: holds the outputs of `oderegistration {other_command}` "
                         f"({shown}), which this run would leave mixed with its own; choose another output folder")
