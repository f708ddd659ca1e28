"""The registration engine: pure Python (torch, numpy, SimpleITK), no Slicer.

Entry point for callers: :func:`register_images` with :class:`RegistrationParameters`.
Names are loaded on first use, so the Slicer panel can read parameter defaults before torch is installed.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "DeviceError": ".device",
    "InputError": ".validation",
    "Progress": ".progress",
    "RegistrationCancelled": ".progress",
    "RegistrationParameters": ".parameters",
    "RegistrationResult": ".registration",
    "register_images": ".registration",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
