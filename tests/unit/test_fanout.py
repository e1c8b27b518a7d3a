"""One source, several consumers: each gets every byte in order, at its own speed; failures stay contained."""

from __future__ import annotations

import os
import threading
import time

import pytest

from airflow_provider_artiload.transfer import fanout
from airflow_provider_artiload.transfer.fanout import Fanout


def joined(chunks) -> bytes:
    return b"".join(bytes(c) for c in chunks)


def test_every_consumer_gets_every_byte_in_order():
    source = [bytes([i]) * 10 for i in range(50)]
    results = Fanout(iter(source), window=40).run([joined] * 3)
    assert results == [b"".join(source)] * 3


def test_a_failing_consumer_does_not_stop_the_others():

    def fails(chunks):
        next(chunks)
        raise RuntimeError("engine went away")

    results = Fanout(iter([b"a"] * 100), window=4).run([fails, lambda chunks: sum(map(len, chunks))])
    assert isinstance(results[0], RuntimeError)
    assert results[1] == 100


def test_a_source_error_reaches_every_consumer_after_the_bytes_before_it():
    seen: list[bytes] = []

    def source():
        yield b"x"
        raise ValueError("digest mismatch")

    def consumer(chunks):
        for chunk in chunks:
            seen.append(bytes(chunk))

    results = Fanout(source()).run([consumer] * 2)
    assert all(isinstance(r, ValueError) and str(r) == "digest mismatch" for r in results)
    assert seen == [b"x", b"x"]


def test_the_source_runs_at_most_a_window_ahead_of_the_fastest_consumer():
    produced = []

    def source():
        for i in range(100):
            produced.append(i)
            yield b"x" * 10

    def stalls(chunks):
        next(chunks)
        time.sleep(0.2)  # the producer has had time to run as far as it may
        assert len(produced) <= 1 + 4 + 1  # the one read, a 40-byte window of 10-byte chunks, one being offered
        raise RuntimeError("stop")

    result = Fanout(source(), window=40).run([stalls])
    assert isinstance(result[0], RuntimeError)


class Watched(fanout._Spool):
    """The real spool, remembering the bytes it held in memory after each chunk it took."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.held_after: list[int] = []

    def _append(self, chunk):
        ok = super()._append(chunk)
        self.held_after.append(self._held)
        return ok


@pytest.fixture
def spools(monkeypatch) -> list[Watched]:
    """Every spool a Fanout makes during the test."""
    made: list[Watched] = []

    def make(*args, **kwargs):
        made.append(Watched(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(fanout, "_Spool", make)
    return made


def test_a_stalled_consumer_does_not_hold_back_the_others(tmp_path, spools):
    """The fast consumer finishes while the slow one still waits; what the slow one missed comes from disk."""
    chunks = [os.urandom(1000) for _ in range(200)]
    fast_done = threading.Event()

    def slow(stream):
        first = bytes(next(stream))
        assert fast_done.wait(10), "the fast consumer was held back by the stalled one"
        return first + joined(stream)

    def fast(stream):
        data = joined(stream)
        fast_done.set()
        return data

    results = Fanout(iter(chunks), window=10_000, spill_dir=str(tmp_path)).run([slow, fast])
    assert results == [b"".join(chunks)] * 2
    assert spools[0].spilled >= 180_000  # all but the window went to disk for the slow one
    assert os.listdir(tmp_path) == []  # the spill file has no name, and is gone


def test_equal_consumers_never_spill(tmp_path, spools):
    results = Fanout(iter([b"y" * 100] * 500), window=1000, spill_dir=str(tmp_path)).run([joined] * 4)
    assert results == [b"y" * 50_000] * 4
    assert spools[0].spilled < 50_000  # a consumer may lag by a chunk or two, never the whole stream


def test_memory_stays_within_the_window_whatever_the_spread(tmp_path, spools):
    def crawls(stream):
        for _ in stream:
            time.sleep(0.0005)

    Fanout(iter([b"z" * 1000] * 300), window=8000, spill_dir=str(tmp_path)).run([crawls, joined])
    assert max(spools[0].held_after) <= 8000 + 1000
