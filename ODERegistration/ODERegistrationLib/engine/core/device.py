"""Which torch device to run on, where mixed precision is safe, the net's memory layout, and a clear message when
memory runs out."""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

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


@contextlib.contextmanager
def cpu_threads(count: int) -> Iterator[int]:
    """torch's CPU thread count for one fit, restored after; yields the count in use (0 keeps the caller's).

    Sums and convolutions split their work by the thread count, and a fit of a few hundred steps carries that last
    bit into its result, so the same run on one and on two threads differs: the count belongs in its report.
    """
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def net_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast for the velocity net: bfloat16 on a CUDA GPU that supports it, full precision elsewhere.

    Only the net runs in reduced precision. bfloat16 keeps float32's range, so the near-zero initial velocities
    need no loss scaling; warps, exp and the similarity stay in float32 (SSIM's variances cancel catastrophically in
    16 bits, and positions need more than 8 bits of mantissa).
    """
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def net_memory_format(device: torch.device, dim: int) -> torch.memory_format:
    """Channels-last weights for the velocity net on the CPU, where oneDNN's convolutions then run 1.3 to 2 times
    faster (forward and backward, 2-D and 3-D, one image or a batch of slices; docs/benchmarks.md); the default
    layout elsewhere, where it is not measured."""
    if device.type != "cpu":
        return torch.contiguous_format
    return torch.channels_last if dim == 2 else torch.channels_last_3d


def is_out_of_memory(error: BaseException) -> bool:
    """True for allocation failures: CUDA/MPS ones, which torch raises under several exception types, the CPU
    allocator's ("can't allocate memory") and numpy's MemoryError."""
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    message = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in message or "can't allocate memory" in message)


def out_of_memory_message(device: torch.device, shape: Sequence[int]) -> str:
    on_cpu = "" if device.type == "cpu" else ", on the CPU (--device cpu),"
    return (f"{device.type.upper()} ran out of memory registering an image of {' x '.join(map(str, shape))} voxels; "
            f"retry with a coarser working resolution (a larger --working-spacing-mm){on_cpu} or in a smaller region "
            "(--roi)")


def unsupported_operation_message(device: torch.device, error: NotImplementedError) -> str:
    """A GPU backend without an operator the fit needs (Apple MPS, which long had no 3-D grid_sample, for one):
    the user can still run on the CPU."""
    return (f"{device.type.upper()}: this torch ({torch.__version__}) lacks an operation the registration needs "
            f"({str(error).splitlines()[0] if str(error) else type(error).__name__}); retry with --device cpu")
