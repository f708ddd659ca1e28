"""What the Slicer panel holds, derived from the engine's parameters; torch-free and Qt-free, so that the module
file can import it when Slicer loads the module (before torch is installed) and tests can check it.

The panel's parameter node has one entry per engine parameter, under the engine's name, with the engine's
default and allowed range or choices; presets are applied to it and read back from it here, so the panel and
the command line cannot disagree on what a preset means.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, Tuple

from .engine.parameters import RegistrationParameters, defaults, field_type, specs
from .engine.presets import load_preset


def engine_parameter_fields() -> Dict[str, Tuple[type, Any, Any]]:
    """name -> (type, default, spec) of every engine parameter, for the parameter node's declaration."""
    return {name: (field_type(name), defaults()[name], spec) for name, spec in specs().items()}


def apply_preset(node: Any, name_or_path: str, folders: Iterable[Path] = ()) -> RegistrationParameters:
    """Set every engine parameter of the panel's node (any object with the parameters as attributes) to the
    preset's value; returns the preset."""
    preset = load_preset(name_or_path, folders)
    for name, value in preset.as_dict().items():
        setattr(node, name, value)
    return preset


def parameters_from_node(node: Any) -> RegistrationParameters:
    """The engine parameters the panel shows (ValueError naming a value out of range)."""
    return RegistrationParameters(**{name: getattr(node, name) for name in specs()})
