"""Feed one stream of chunks to several consumers at once, with bounded memory.

A producer thread reads the source (and does the hashing) while each
consumer (an upload to one engine) runs in its own thread. Queues hold a few
chunks each, so memory stays flat; a consumer that fails is detached and
the others go on; a producer error (a failed check) reaches every consumer,
which then abandons its upload before the archive's end.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

DEPTH = 4
_END = object()
T = TypeVar("T")


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Fanout:
    """``consumers[i](chunks)`` each receive every chunk of ``source``; returns their results or errors."""

    def __init__(self, source: Iterable[bytes], *, depth: int = DEPTH) -> None:
        self._source = source
        self._depth = depth

    def run(self, consumers: list[Callable[[Iterator[bytes]], T]]) -> list[T | BaseException]:
        queues: list[queue.Queue[Any]] = [queue.Queue(self._depth) for _ in consumers]
        live = [True] * len(consumers)
        results: list[Any] = [None] * len(consumers)

        def consume(i: int) -> None:
            try:
                results[i] = consumers[i](_drain(queues[i]))
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                results[i] = exc
            finally:
                live[i] = False
                _empty(queues[i])

        threads = [threading.Thread(target=consume, args=(i,), daemon=True) for i in range(len(consumers) - 1)]
        for thread in threads:
            thread.start()
        producer = threading.Thread(target=self._produce, args=(queues, live), daemon=True)
        producer.start()
        consume(len(consumers) - 1)  # the last consumer runs in the caller's thread
        for thread in threads:
            thread.join()
        producer.join()
        return results

    def _produce(self, queues: list[queue.Queue[Any]], live: list[bool]) -> None:
        try:
            for chunk in self._source:
                if not any(live):
                    return
                for i, q in enumerate(queues):
                    _put(q, chunk, lambda i=i: live[i])
            for i, q in enumerate(queues):
                _put(q, _END, lambda i=i: live[i])
        except BaseException as exc:  # noqa: BLE001 - every consumer must learn of it
            for i, q in enumerate(queues):
                _put(q, _Failed(exc), lambda i=i: live[i])


def _put(q: queue.Queue[Any], item: Any, alive: Callable[[], bool]) -> None:
    while alive():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _drain(q: queue.Queue[Any]) -> Iterator[bytes]:
    while True:
        item = q.get()
        if item is _END:
            return
        if isinstance(item, _Failed):
            raise item.error
        yield item


def _empty(q: queue.Queue[Any]) -> None:
    try:
        while True:
            q.get_nowait()
    except queue.Empty:
        pass
