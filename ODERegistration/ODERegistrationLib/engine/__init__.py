"""The registration engine: pure Python (torch, numpy, SimpleITK), no Slicer.

Entry point for callers: :func:`register_images` with :class:`RegistrationParameters`.
"""
__version__ = "0.1.0"

from .device import DeviceError  # noqa: E402
from .parameters import RegistrationParameters  # noqa: E402
from .progress import Progress, RegistrationCancelled  # noqa: E402
from .registration import RegistrationResult, register_images  # noqa: E402
from .validation import InputError  # noqa: E402

__all__ = ["DeviceError", "InputError", "Progress", "RegistrationCancelled", "RegistrationParameters",
           "RegistrationResult", "register_images", "__version__"]
