"""Transfer progress for task logs: bytes, total, MB/s.

A line every :data:`INTERVAL_SECONDS`, and, when the total is known and at
least :data:`STEP_MIN_BYTES`, one each time another :data:`STEP_PERCENT` of it
is done, so even a fast transfer of a modest image shows its progress before
the closing "done" line. The callers log "done" (:meth:`Progress.finish`)
only after the transfer was verified.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

INTERVAL_SECONDS = 5.0
STEP_PERCENT = 25
STEP_MIN_BYTES = 1 << 20  # smaller transfers get only the closing line


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} GiB"


class Progress:
    """Counts bytes of one transfer and logs them, throttled."""

    def __init__(
        self,
        log: logging.Logger,
        label: str,
        total: int | None = None,
        *,
        interval: float = INTERVAL_SECONDS,
        step_percent: int = STEP_PERCENT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.label = label
        self.total = total
        self.done = 0
        self.interval = interval
        self._clock = clock
        self.started = clock()
        self._last = self.started
        self._step = total * step_percent // 100 if total and total >= STEP_MIN_BYTES and step_percent else 0
        self._next_step = self._step

    @property
    def seconds(self) -> float:
        return self._clock() - self.started

    def rate(self, seconds: float | None = None) -> float:
        """MB/s (10^6 bytes) since the start."""
        return self.done / max(self.seconds if seconds is None else seconds, 1e-9) / 1e6

    def add(self, n: int) -> None:
        self.done += n
        now = self._clock()
        stepped = self._step and self.done >= self._next_step and self.done < (self.total or 0)
        if stepped:
            while self._next_step <= self.done:
                self._next_step += self._step
        if stepped or now - self._last >= self.interval:
            self._last = now
            self.log.info("%s: %s, %.1f MB/s", self.label, self._amount(), self.rate(now - self.started))

    def finish(self, note: str = "") -> None:
        seconds = self.seconds
        self.log.info(
            "%s: done, %s in %.2f s (%.1f MB/s)%s", self.label, human(self.done), seconds, self.rate(seconds), note
        )

    def _amount(self) -> str:
        if self.total:
            return f"{human(self.done)} / {human(self.total)} ({100 * self.done / self.total:.0f}%)"
        return human(self.done)
