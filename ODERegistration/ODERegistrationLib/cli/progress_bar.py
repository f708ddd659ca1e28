"""A tqdm bar fed by the engine's progress callback."""
from __future__ import annotations

import sys
from typing import Optional, TextIO

from tqdm import tqdm

from ..engine import Progress


LOG_INTERVAL_S = 30.0
"""How often the bar is redrawn when its stream is not a terminal (a log file, a pipe): each redraw is kept there,
so the terminal's ten redraws a second would fill a log with one line hundreds of screens wide."""


class ProgressBar:
    """Shows iteration, total loss and each level's loss (L0 = finest); a no-op when disabled.

    The bar opens with the first report, which brings the total (it depends on whether the images are registered
    as 2-D or 3-D): input refused before the run starts then leaves its one error line alone on the stream."""

    def __init__(self, disabled: bool = False, stream: Optional[TextIO] = None) -> None:
        stream = stream if stream is not None else sys.stderr
        interval = 0.1 if stream.isatty() else LOG_INTERVAL_S
        self._options = dict(desc="registering", unit="it", disable=disabled, dynamic_ncols=True, file=stream,
                             mininterval=interval)
        self._bar: Optional[tqdm] = None

    def update(self, progress: Progress) -> None:
        if self._bar is None:
            self._bar = tqdm(total=progress.iterations, **self._options)
        self._bar.total = progress.iterations
        levels = " ".join(f"L{index}={loss:.4f}" for index, loss in enumerate(progress.level_losses))
        self._bar.set_postfix_str(f"loss={progress.loss:.4f} {levels}", refresh=False)
        self._bar.update(progress.iteration - self._bar.n)

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc_info) -> None:
        if self._bar is not None:
            self._bar.close()
