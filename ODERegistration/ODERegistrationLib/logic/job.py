"""Run an engine call off the GUI thread: its inputs are plain SimpleITK images, progress goes through a queue.

The worker never touches MRML, VTK or Qt objects; the main thread polls :meth:`EngineJob.poll` from a timer and
builds nodes only after the job succeeded.
"""
from __future__ import annotations

import os
import queue
import threading
from typing import Any, Callable, List, Optional

import torch

from ..engine import DeviceError, InputError, Progress, RegistrationCancelled
from ..engine.core.device import cpu_threads
from ..engine.parameters import in_panel_words
from ..engine.progress import CancelCheck, ProgressCallback

EngineTask = Callable[[ProgressCallback, CancelCheck], Any]
"""An engine call (a pair registration, a sequence) given its progress callback and its cancel check."""


class EngineJob:
    """One engine call in a daemon thread, with cancel and a progress queue."""

    def __init__(self, task: EngineTask, device: str = "auto") -> None:
        self.task = task
        self.device = device
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.cancelled = False
        self._cancel = threading.Event()
        self._progress: "queue.Queue[Progress]" = queue.Queue()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        """Run in the background, leaving one CPU core to the GUI (torch's thread count is restored after)."""
        self._thread = threading.Thread(target=self._run_leaving_a_core, name="ODERegistration", daemon=True)
        self._thread.start()

    def _run_leaving_a_core(self) -> None:
        all_but_one_core = max(1, min(torch.get_num_threads(), (os.cpu_count() or 2) - 1))
        with cpu_threads(all_but_one_core if self.device in ("auto", "cpu") else 0):
            self.run()

    def run(self) -> None:
        """Run in the calling thread; errors are kept in ``error`` rather than raised."""
        try:
            result = self.task(self._progress.put, self._cancel.is_set)
            if self._cancel.is_set():  # cancelled after the last check (writing the outputs): still cancelled
                raise RegistrationCancelled("cancelled while the outputs were being made")
            self.result = result
        except RegistrationCancelled:
            self.cancelled = True
        except Exception as error:  # reported to the user by the main thread, never lost
            self.error = _in_panel_words(error)

    def cancel(self) -> None:
        """Ask the optimizer to stop; it does so before its next iteration."""
        self._cancel.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: Optional[float] = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def poll(self) -> List[Progress]:
        """Progress records posted since the last poll."""
        updates = []
        while True:
            try:
                updates.append(self._progress.get_nowait())
            except queue.Empty:
                return updates


def _in_panel_words(error: Exception) -> Exception:
    """The engine's own errors advise in the command line's words (``use --device cpu``); the panel's user is told
    the panel's (``use Device = cpu``). Any other error is kept as raised."""
    if isinstance(error, (InputError, DeviceError)):
        return type(error)(in_panel_words(str(error))).with_traceback(error.__traceback__)
    return error
