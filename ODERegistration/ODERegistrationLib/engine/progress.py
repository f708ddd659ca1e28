"""What the optimizer reports while it runs, and how a caller asks it to stop."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple


class RegistrationCancelled(Exception):
    """Raised inside the optimizer loop when the caller's cancel check returns True."""


@dataclass(frozen=True)
class Progress:
    iteration: int
    """Iterations done so far (1-based)."""
    iterations: int
    loss: float
    level_losses: Tuple[float, ...]
    """Loss of each pyramid level, finest first."""
    elapsed_seconds: float

    @property
    def fraction(self) -> float:
        return self.iteration / self.iterations


ProgressCallback = Optional[Callable[[Progress], None]]
CancelCheck = Optional[Callable[[], bool]]
