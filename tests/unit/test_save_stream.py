"""The export's receive path and the tarball's write-behind, byte for byte, without an engine.

An engine sends ``GET /images/{name}/get`` chunked (32 KiB chunks on 20.10
and 28.x); the client reads it into 1 MiB pieces whose buffers are reused,
and the file is handed to the disk as it is written.
"""

from __future__ import annotations

import gc
import os

import pytest

from airflow_provider_artiload.engine import http as h
from airflow_provider_artiload.engine.client import EngineClient
from airflow_provider_artiload.exceptions import EngineError, TransferError
from airflow_provider_artiload.storage import AtomicFile
from airflow_provider_artiload.storage import local
from airflow_provider_artiload.transport.base import ByteCounter, Stream

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-tar\r\n"


class CannedConnection:
    """A peer that answers any request with ``reply``, a few bytes per read, then ends the connection."""

    def __init__(self, reply: bytes, *, per_read: int) -> None:
        self._reply = memoryview(reply)
        self._per_read = per_read

    def sendall(self, data: memoryview) -> None:
        pass

    def recv_into(self, buffer: memoryview) -> int:
        n = min(len(buffer), len(self._reply), self._per_read)
        buffer[:n] = self._reply[:n]
        self._reply = self._reply[n:]
        return n

    def settimeout(self, timeout: float | None) -> None:
        pass

    def abort(self) -> None:
        pass

    def shutdown_write(self) -> None:
        pass

    def close(self) -> None:
        pass


class CannedDialer:
    def __init__(self, reply: bytes, *, per_read: int = 1 << 20) -> None:
        self.reply, self.per_read = reply, per_read
        self.counter = ByteCounter()

    url = "canned://engine"

    def dial(self, timeout: float | None = None) -> Stream:
        return Stream(CannedConnection(self.reply, per_read=self.per_read), name=self.url, counter=self.counter)

    def close(self) -> None:
        pass


def chunked(*chunks: bytes, trailer: bytes = b"\r\n") -> bytes:
    return HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(
        b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n" + trailer


def export(reply: bytes, *, per_read: int = 1 << 20, piece: int | None = None) -> list[bytes]:
    client = EngineClient(CannedDialer(reply, per_read=per_read))  # type: ignore[arg-type]
    with client._request("GET", "/images/x/get") as response:
        h.raise_for_status(response, where="canned", what="save")
        pieces = h.body_pieces(response, piece=piece) if piece else h.body_pieces(response)
        return [bytes(p) for p in pieces]


@pytest.mark.parametrize("per_read", [1, 7, 4096, 1 << 20])
def test_a_chunked_body_arrives_whole_in_full_pieces_however_the_reads_fall(per_read):
    data = os.urandom(100_000)
    chunks = [data[i : i + 32768] for i in range(0, len(data), 32768)]
    pieces = export(chunked(*chunks), per_read=per_read, piece=40_000)
    assert b"".join(pieces) == data
    assert [len(p) for p in pieces] == [40_000, 40_000, 20_000]


def test_chunk_extensions_and_trailers_are_skipped():
    reply = HEAD + b"Transfer-Encoding: chunked\r\n\r\n3;name=value\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n"
    assert export(reply) == [b"abcde"]


def test_a_body_with_a_length_and_one_that_runs_to_the_close_are_read_too():
    data = os.urandom(3000)
    assert b"".join(export(HEAD + b"Content-Length: 3000\r\n\r\n" + data, per_read=100, piece=1024)) == data
    assert b"".join(export(HEAD + b"Connection: close\r\n\r\n" + data, per_read=100, piece=1024)) == data


@pytest.mark.parametrize(
    "reply",
    [
        chunked(b"abc")[: -len(b"0\r\n\r\n") - 3],  # cut inside the chunk's data
        HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",  # no last chunk
        HEAD + b"Content-Length: 10\r\n\r\nabc",
    ],
)
def test_a_body_cut_short_is_a_transfer_error(reply):
    with pytest.raises(TransferError, match="closed the stream early"):
        export(reply)


@pytest.mark.parametrize(
    "framing", [b"zz\r\nabc\r\n", b"-3\r\nabc\r\n", b"0x3\r\nabc\r\n", b"3\r\nabcXY", b"1" * 5000 + b"\r\n"]
)
def test_framing_that_is_not_http_is_an_engine_error(framing):
    with pytest.raises(EngineError, match="malformed chunked body"):
        export(HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + framing + b"0\r\n\r\n")


def test_the_export_yields_the_pieces_through_the_client():
    data = os.urandom(50_000)
    client = EngineClient(CannedDialer(chunked(data)))  # type: ignore[arg-type]
    with client.export_image("x") as chunks:
        assert b"".join(bytes(c) for c in chunks) == data


def test_a_piece_buffer_is_reused_only_once_nobody_holds_it():
    buffers = h.PieceBuffers(16, keep=2)
    first = buffers.take()
    second = buffers.take()
    assert second is not first  # the first is still held (by this test)
    view = memoryview(first)
    del first
    third = buffers.take()
    assert third is not view.obj  # a memoryview still holds the first buffer
    view.release()
    del view
    gc.collect()
    fourth = buffers.take()
    assert len(fourth) == 16 and fourth is buffers._buffers[-1]
    assert sum(1 for b in buffers._buffers) == 2  # no more kept than asked


def test_pieces_held_downstream_are_never_overwritten():
    data = os.urandom(300_000)
    chunks = [data[i : i + 32768] for i in range(0, len(data), 32768)]
    client = EngineClient(CannedDialer(chunked(*chunks)))  # type: ignore[arg-type]
    with client._request("GET", "/images/x/get") as response:
        held = list(h.body_pieces(response, piece=10_000))  # every piece kept at once: none may be reused
    assert b"".join(held) == data


class RecordingSync:
    def __init__(self, result: int = 0) -> None:
        self.calls: list[tuple[int, int, int]] = []
        self.result = result

    def __call__(self, fd: int, offset: int, nbytes: int, flags: int) -> int:
        self.calls.append((offset, nbytes, flags))
        return self.result


def test_write_behind_starts_each_range_and_waits_for_the_one_before(tmp_path, monkeypatch):
    recorded = RecordingSync()
    monkeypatch.setattr(local, "_sync_file_range", lambda: recorded)
    data = os.urandom(3500)
    with AtomicFile(str(tmp_path / "x.tar")) as out:
        out._write_behind.step = 1000
        for i in range(0, len(data), 500):
            out.write(data[i : i + 500])
        out.commit()
    assert (tmp_path / "x.tar").read_bytes() == data
    start, wait = local.SYNC_FILE_RANGE_WRITE, 7
    assert recorded.calls == [(0, 1000, start), (1000, 1000, start), (0, 1000, wait), (2000, 1000, start),
                              (1000, 1000, wait)]


def test_write_behind_stops_quietly_where_it_is_refused_or_missing(tmp_path, monkeypatch):
    refused = RecordingSync(result=-1)
    monkeypatch.setattr(local, "_sync_file_range", lambda: refused)
    with AtomicFile(str(tmp_path / "x.tar")) as out:
        out._write_behind.step = 10
        for _ in range(5):
            out.write(b"x" * 20)
        out.commit()
    assert len(refused.calls) == 1 and (tmp_path / "x.tar").read_bytes() == b"x" * 100
    monkeypatch.setattr(local, "_sync_file_range", lambda: None)
    with AtomicFile(str(tmp_path / "y.tar")) as out:
        out.write(b"y" * 100)
        out.commit()
    assert (tmp_path / "y.tar").read_bytes() == b"y" * 100


def test_the_real_sync_file_range_is_found_on_linux(tmp_path):
    call = local._sync_file_range()
    if not os.uname().sysname == "Linux":
        assert call is None
        return
    assert call is not None
    with open(tmp_path / "f", "wb") as f:
        f.write(b"z" * 8192)
        f.flush()
        assert call(f.fileno(), 0, 8192, local.SYNC_FILE_RANGE_WRITE) == 0
