"""Feed one stream of chunks to several consumers, each at its own speed, with bounded memory.

A producer thread reads the source once (and does the checks) into a spool;
each consumer (an upload to one target) reads the spool from its own cursor
in its own thread. The spool keeps the last :data:`WINDOW` bytes in memory;
a chunk leaving memory that a slower consumer has not read yet is written to
an unnamed temporary file first (sparse, at its stream offset, removed when
the file is closed), where that consumer reads it later. The producer runs
at most a window ahead of the *fastest* live consumer, so a slow or stalled
target costs disk, never memory, and never holds the others back; equal
consumers never touch the disk.

A consumer that fails is detached and the others go on. A producer error
(a failed check) reaches every consumer after the last chunk it produced,
so none receives the end of a bad archive.
"""

from __future__ import annotations

import bisect
import os
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

WINDOW = 16 << 20  # bytes kept in memory, and how far the producer may run ahead of the fastest consumer
DISK_PIECE = 1 << 20  # what a consumer behind the window reads from the spill file at once
T = TypeVar("T")


class Fanout:
    """``consumers[i](chunks)`` each receive every chunk of ``source``; returns their results or errors."""

    def __init__(self, source: Iterable[bytes], *, window: int = WINDOW, spill_dir: str | None = None) -> None:
        self._source = source
        self._window = window
        self._spill_dir = spill_dir

    def run(self, consumers: list[Callable[[Iterator[bytes]], T]]) -> list[T | BaseException]:
        spool = _Spool(len(consumers), self._window, self._spill_dir)
        results: list[Any] = [None] * len(consumers)

        def consume(i: int) -> None:
            try:
                results[i] = consumers[i](spool.read(i))
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                results[i] = exc
            finally:
                spool.detach(i)

        threads = [threading.Thread(target=consume, args=(i,), daemon=True) for i in range(len(consumers) - 1)]
        producer = threading.Thread(target=spool.fill, args=(self._source,), daemon=True)
        try:
            for thread in threads:
                thread.start()
            producer.start()
            consume(len(consumers) - 1)  # the last consumer runs in the caller's thread
            for thread in threads:
                thread.join()
            producer.join()
        finally:
            spool.close()
        return results


class _Spool:
    """The stream's recent chunks in memory, older ones a laggard still needs on disk, and every cursor."""

    def __init__(self, readers: int, window: int, spill_dir: str | None) -> None:
        self._cond = threading.Condition()
        self._window = window
        self._spill_dir = spill_dir
        self._offsets: deque[int] = deque()  # stream offset of each chunk in memory
        self._chunks: deque[bytes | memoryview] = deque()
        self._held = 0  # bytes in memory
        self._end = 0  # bytes produced so far
        self._positions = [0] * readers
        self._live = [True] * readers
        self._done = False
        self._error: BaseException | None = None
        self._spill: Any = None  # the unnamed file behind the window, made on first need
        self.spilled = 0  # bytes written to it (for tests and logs)

    # ---- the producer
    def fill(self, source: Iterable[bytes]) -> None:
        try:
            for chunk in source:
                if not self._append(chunk):
                    return  # every consumer is gone
            self._finish(None)
        except BaseException as exc:  # noqa: BLE001 - every consumer must learn of it
            self._finish(exc)

    def _append(self, chunk: bytes | memoryview) -> bool:
        with self._cond:
            while any(self._live) and self._end - self._fastest() >= self._window:
                self._cond.wait()
            if not any(self._live):
                return False
            self._offsets.append(self._end)
            self._chunks.append(chunk)
            self._held += len(chunk)
            self._end += len(chunk)
            while self._held > self._window and len(self._chunks) > 1:
                self._evict()
            self._cond.notify_all()
            return True

    def _evict(self) -> None:
        """Drop the oldest chunk from memory; first write it to disk if a live consumer has yet to read it."""
        offset, chunk = self._offsets.popleft(), self._chunks.popleft()
        self._held -= len(chunk)
        if self._slowest() < offset + len(chunk):
            if self._spill is None:
                self._spill = tempfile.TemporaryFile(prefix="artiload-fanout-", dir=self._spill_dir)
            os.pwrite(self._spill.fileno(), chunk, offset)
            self.spilled += len(chunk)

    def _finish(self, error: BaseException | None) -> None:
        with self._cond:
            self._done, self._error = True, error
            self._cond.notify_all()

    # ---- the consumers
    def read(self, i: int) -> Iterator[bytes | memoryview]:
        while True:
            piece = self._next(i)
            if piece is None:
                return
            yield piece

    def _next(self, i: int) -> bytes | memoryview | None:
        with self._cond:
            while self._positions[i] >= self._end and not self._done:
                self._cond.wait()
            position = self._positions[i]
            if position >= self._end:
                if self._error is not None:
                    raise self._error
                return None
            if self._offsets and position >= self._offsets[0]:
                piece = self._in_memory(position)
            else:  # behind the window: on disk, written before it left memory
                limit = self._offsets[0] if self._offsets else self._end
                piece = os.pread(self._spill.fileno(), min(DISK_PIECE, limit - position), position)
            self._positions[i] = position + len(piece)
            self._cond.notify_all()
            return piece

    def _in_memory(self, position: int) -> bytes | memoryview:
        k = bisect.bisect_right(self._offsets, position) - 1
        chunk, start = self._chunks[k], self._offsets[k]
        return chunk if position == start else memoryview(chunk)[position - start :]

    def detach(self, i: int) -> None:
        with self._cond:
            self._live[i] = False
            self._cond.notify_all()

    # ---- cursors
    def _fastest(self) -> int:
        return max((p for p, live in zip(self._positions, self._live) if live), default=self._end)

    def _slowest(self) -> int:
        return min((p for p, live in zip(self._positions, self._live) if live), default=self._end)

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
