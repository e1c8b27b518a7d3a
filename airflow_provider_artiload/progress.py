"""Transfer progress for task logs: bytes, total, MB/s; at most one line every few seconds."""

from __future__ import annotations

import logging
import time

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
        self, log: logging.Logger, label: str, total: int | None = None, *, interval: float = INTERVAL_SECONDS
    ) -> None:
        self.log = log
        self.label = label
        self.total = total
        self.done = 0
        self.interval = interval
        self.started = time.monotonic()
        self._last = self.started

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def rate(self) -> float:
        """MB/s (10^6 bytes) since the start."""
        return self.done / max(self.seconds, 1e-9) / 1e6

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self.log.info("%s: %s, %.1f MB/s", self.label, self._amount(), self.rate())

    def finish(self, note: str = "") -> None:
        self.log.info(
            "%s: done, %s in %.2f s (%.1f MB/s)%s", self.label, human(self.done), self.seconds, self.rate(), note
        )

    def _amount(self) -> str:
        if self.total:
            return f"{human(self.done)} / {human(self.total)} ({100 * self.done / self.total:.0f}%)"
        return human(self.done)
