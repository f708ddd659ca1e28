"""Which torch device to run on, and a clear message when it runs out of memory."""
from __future__ import annotations

import torch


class DeviceError(RuntimeError):
    """The requested device is missing or ran out of memory; the message says what to do instead."""


def choose_device(requested: str = "auto") -> torch.device:
    """CUDA when present, else Apple MPS, else CPU; an explicit request is honoured or refused clearly."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device 'cuda' was requested but torch sees no CUDA GPU (CPU-only torch build?); use --device cpu")
    if requested == "mps" and not _mps_available():
        raise DeviceError("device 'mps' was requested but Apple MPS is not available; use --device cpu")
    if requested not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unknown device {requested!r}: use auto, cpu, cuda or mps")
    return torch.device(requested)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA/MPS allocation failures, which torch raises under several exception types."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def out_of_memory_message(device: torch.device, shape) -> str:
    return (f"{device.type.upper()} ran out of memory registering an image of {' x '.join(map(str, shape))} voxels; "
            "retry on the CPU (device cpu), with fewer pyramid levels' work (slices mode for thick stacks), "
            "or on a cropped or downsampled image")
