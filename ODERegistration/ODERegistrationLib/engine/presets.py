"""Presets as data: JSON files of parameter values, shipped in ``ODERegistrationLib/presets`` and saved by
users anywhere (the Slicer panel uses the user's settings folder), read the same way by the CLI and the panel.

A preset file is ``{"description": "...", "parameters": {name: value, ...}}`` and lists every parameter, so that a
preset keeps meaning the same run when the defaults change (``paper`` must always be the published method).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterable, Optional

from .parameters import RegistrationParameters, specs

SHIPPED_PRESETS = Path(__file__).resolve().parents[1] / "presets"
"""Inside the package, so that the source tree, an installed wheel and Slicer's installed module all hold them."""
DEFAULT_PRESET = "fast"
SEQUENCE_PRESET = "sequence"
"""What a cine sequence starts from: hundreds of slice problems in one batch, measured in docs/benchmarks.md."""


def preset_files(folders: Iterable[Path] = ()) -> Dict[str, Path]:
    """Preset name -> file, the shipped ones first, then the folders' in order (a later folder's preset of the same
    name wins). A shipped preset cannot be replaced: ``paper`` must stay the published method in the panel too."""
    files = {path.stem: path for path in sorted(SHIPPED_PRESETS.glob("*.json"))}
    shipped = set(files)
    for folder in folders:
        files.update({path.stem: path for path in sorted(Path(folder).glob("*.json")) if path.stem not in shipped})
    return files


def user_preset_path(folder: Path, name: str) -> Path:
    """Where a user's preset of this name is saved; ValueError for a name that is not a plain file name or that a
    shipped preset has (it would be ignored)."""
    name = name.strip()
    if not name or Path(name).name != name or name.startswith("."):
        raise ValueError(f"preset name {name!r}: give a plain name, without folders")
    if name in preset_files():
        raise ValueError(f"preset name {name!r}: a shipped preset has it; choose another name")
    return Path(folder) / f"{name}.json"


def load_preset(name_or_path: str, folders: Iterable[Path] = (), complete: bool = False) -> RegistrationParameters:
    """A preset by name (shipped, or in ``folders``) or by the path of a preset file or a ``report.json``, whose
    ``parameters`` reproduce that run. A parameter the file leaves out takes today's default, unless ``complete``
    is asked for (a run to reproduce exactly: a report written before a parameter existed would silently run
    with that parameter's new default). ValueError names the preset and the problem."""
    path = preset_files(folders).get(name_or_path) or Path(name_or_path)
    if not path.is_file():
        raise ValueError(f"preset {name_or_path!r}: no such preset (shipped: {', '.join(preset_files(folders))}) "
                         "and no such file")
    try:
        content = _read_json(path)
    except (OSError, ValueError) as error:
        raise ValueError(f"preset {path}: not a preset or report file ({error})") from None
    values = content.get("parameters") if isinstance(content, dict) else None
    if not isinstance(values, dict):
        raise ValueError(f"preset {path}: not a preset or report file: it needs a 'parameters' mapping of names to "
                         'values, as in {"parameters": {"iterations": 250}}')
    missing = [name for name in specs() if name not in values] if complete else []
    if missing:
        raise ValueError(f"{path}: has no value for {', '.join(missing)} (written by an older version?), so its "
                         "run cannot be reproduced exactly; --preset takes its values with today's defaults for "
                         "the rest")
    return RegistrationParameters.from_dict(values, f"preset {path}")


def save_preset(parameters: RegistrationParameters, path: Path, description: str = "") -> Path:
    """Write every parameter value, so that the preset reproduces this run whatever the defaults become."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"description": description, "parameters": parameters.as_dict()}, indent=2) + "\n")
    return path


def preset_description(name: str, folders: Iterable[Path] = ()) -> Optional[str]:
    """The preset's description (the panel's tooltip); for a file that is not a preset, why, so that one bad file in
    the user's folder cannot stop the panel from opening."""
    path = preset_files(folders).get(name)
    if path is None:
        return None
    try:
        content = _read_json(path)
    except (OSError, ValueError) as error:
        return f"not a preset file ({error})"
    return content.get("description") if isinstance(content, dict) else "not a preset file (not a JSON object)"


def _read_json(path: Path):
    """A JSON file, with or without the byte-order mark that Windows editors write at the start."""
    return json.loads(path.read_text(encoding="utf-8-sig"))
