"""One source, several consumers: every consumer sees every chunk; failures stay contained."""

from __future__ import annotations

from airflow_provider_artiload.transfer.fanout import Fanout


def test_every_consumer_gets_every_chunk_in_order():
    source = [bytes([i]) * 10 for i in range(50)]
    results = Fanout(iter(source), depth=2).run([lambda chunks: b"".join(chunks)] * 3)
    assert results == [b"".join(source)] * 3


def test_a_failing_consumer_does_not_stop_the_others():

    def fails(chunks):
        next(chunks)
        raise RuntimeError("engine went away")

    results = Fanout(iter([b"a"] * 100), depth=1).run([fails, lambda chunks: sum(map(len, chunks))])
    assert isinstance(results[0], RuntimeError)
    assert results[1] == 100


def test_a_source_error_reaches_every_consumer():

    def source():
        yield b"x"
        raise ValueError("digest mismatch")

    results = Fanout(source()).run([lambda chunks: list(chunks)] * 2)
    assert all(isinstance(r, ValueError) and str(r) == "digest mismatch" for r in results)


def test_the_source_is_not_read_ahead_beyond_the_queue_depth():
    produced = []

    def source():
        for i in range(100):
            produced.append(i)
            yield b"x"

    def slow(chunks):
        next(chunks)
        assert len(produced) <= 2 + 2  # queue depth, one in hand, one being put
        raise RuntimeError("stop")

    result = Fanout(source(), depth=2).run([slow])
    assert isinstance(result[0], RuntimeError)
