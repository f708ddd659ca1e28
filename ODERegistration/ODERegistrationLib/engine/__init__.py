"""The registration engine: pure Python (torch, numpy, SimpleITK), no Slicer.

:mod:`.core` is the method in torch alone; :mod:`.pipeline` takes images in and writes outputs around it;
parameters, presets and progress, used by both, live here.

Entry point for callers: :func:`register_images` with :class:`RegistrationParameters`.
Names are loaded on first use, so the Slicer panel can read parameter defaults before torch is installed.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "DeviceError": ".core.device",
    "InputError": ".pipeline.validation",
    "Progress": ".progress",
    "RegistrationCancelled": ".progress",
    "RegistrationParameters": ".parameters",
    "RegistrationResult": ".pipeline.registration",
    "register_images": ".pipeline.registration",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
