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
from dataclasses import dataclass

INTERVAL_SECONDS = 5.0
STEP_PERCENT = 25
STEP_MIN_BYTES = 1 << 20  # smaller transfers get only the closing line


@dataclass(frozen=True)
class SizeStyle:
    """How :func:`human` writes a size: the unit base and names, the decimals, and the gap before the unit."""

    base: int
    units: tuple[str, ...]
    decimals: int
    gap: str


IEC = SizeStyle(1024, ("B", "KiB", "MiB", "GiB"), 1, " ")  # artiload's own lines: "1.5 MiB"
PLAIN = SizeStyle(1000, ("B", "kB", "MB", "GB"), 2, "")  # BuildKit's --progress=plain: "2.05kB"


def human(size: float, style: SizeStyle = IEC) -> str:
    """``size`` bytes in the largest unit it reaches (the last unit at most); whole bytes without decimals."""
    for unit in style.units:
        if abs(size) < style.base or unit == style.units[-1]:
            break
        size /= style.base
    if unit == style.units[0]:
        return f"{int(size)}{style.gap}{unit}"
    return f"{size:.{style.decimals}f}{style.gap}{unit}"


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
