"""Run the engine off the GUI thread: inputs are plain SimpleITK images, progress goes through a queue.

The worker never touches MRML, VTK or Qt objects; the main thread polls :meth:`RegistrationJob.poll` from a timer
and builds nodes only after the job succeeded.
"""
from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass, field
from typing import List, Optional

import SimpleITK as sitk
import torch

from ..engine import Progress, RegistrationCancelled, RegistrationParameters, RegistrationResult, register_images


@dataclass
class EngineInputs:
    """A snapshot of everything the engine needs, taken on the main thread."""

    fixed: sitk.Image
    moving: sitk.Image
    parameters: RegistrationParameters
    moving_labels: Optional[sitk.Image] = None
    fixed_labels: Optional[sitk.Image] = None
    fixed_mask: Optional[sitk.Image] = None
    moving_mask: Optional[sitk.Image] = None
    region_corners: Optional[List[List[float]]] = None
    """Physical LPS points whose box on the fixed grid is the region (an ROI node's corners)."""
    names: dict = field(default_factory=dict)


class RegistrationJob:
    """One registration in a daemon thread, with cancel and a progress queue."""

    def __init__(self, inputs: EngineInputs) -> None:
        self.inputs = inputs
        self.result: Optional[RegistrationResult] = None
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
        threads = torch.get_num_threads()
        if self.inputs.parameters.device in ("auto", "cpu"):
            torch.set_num_threads(max(1, min(threads, (os.cpu_count() or 2) - 1)))
        try:
            self.run()
        finally:
            torch.set_num_threads(threads)

    def run(self) -> None:
        """Run in the calling thread; errors are kept in ``error`` rather than raised."""
        try:
            self.result = register_images(self.inputs.fixed, self.inputs.moving, self.inputs.parameters,
                                          moving_labels=self.inputs.moving_labels,
                                          fixed_labels=self.inputs.fixed_labels, progress=self._progress.put,
                                          cancel=self._cancel.is_set, names=self.inputs.names,
                                          fixed_mask=self.inputs.fixed_mask, moving_mask=self.inputs.moving_mask,
                                          region_corners=self.inputs.region_corners)
        except RegistrationCancelled:
            self.cancelled = True
        except Exception as error:  # reported to the user by the main thread, never lost
            self.error = error

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
