"""Transfer progress for task logs: bytes, total, MB/s; at most one line every few seconds."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

INTERVAL_SECONDS = 5.0


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

    @property
    def seconds(self) -> float:
        return self._clock() - self.started

    def rate(self, seconds: float | None = None) -> float:
        """MB/s (10^6 bytes) since the start."""
        return self.done / max(self.seconds if seconds is None else seconds, 1e-9) / 1e6

    def add(self, n: int) -> None:
        self.done += n
        now = self._clock()
        if now - self._last >= self.interval:
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
