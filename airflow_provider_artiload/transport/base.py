"""The byte-stream interface every transport provides.

A :class:`Stream` is socket-shaped (``sendall``, ``recv_into``, ``makefile``)
so that ``http.client`` and our gRPC proxy can run over a unix socket, a TLS
socket or an SSH channel alike. It counts bytes both ways, writes large
buffers in bounded slices, and turns socket errors into TransferError /
TransferTimeout that name the endpoint.
"""

from __future__ import annotations

import io
import socket
import ssl
import threading
from typing import Protocol

from airflow_provider_artiload.exceptions import TLSError, TransferError, TransferTimeout

WRITE_SLICE = 1 << 20  # paramiko re-slices a bytes buffer per packet: keep writes ~1 MiB


class ByteCounter:
    """Bytes moved through a dialer's streams; safe to update from many threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent = 0
        self.received = 0

    def add(self, *, sent: int = 0, received: int = 0) -> None:
        with self._lock:
            self.sent += sent
            self.received += received


class RawConnection(Protocol):
    """What a transport wraps: a connected socket or an SSH channel."""

    def sendall(self, data: memoryview) -> None: ...
    def recv_into(self, buffer: memoryview) -> int: ...
    def settimeout(self, timeout: float | None) -> None: ...
    def abort(self) -> None: ...
    def shutdown_write(self) -> None: ...
    def close(self) -> None: ...


class Stream:
    """A connected, counted byte stream to one endpoint."""

    def __init__(self, raw: RawConnection, *, name: str, counter: ByteCounter | None = None) -> None:
        self._raw = raw
        self.name = name
        self.counter = counter or ByteCounter()
        self._timeout: float | None = None
        self._pushback = b""
        self.closed = False
        self._readers = 0  # open makefile() readers: like a socket, close() waits for them
        self._closing = False

    def unread(self, data: bytes) -> None:
        """Put bytes back in front of the stream (the tail of an HTTP upgrade reply)."""
        self._pushback = data + self._pushback

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        try:
            for start in range(0, len(view), WRITE_SLICE):
                piece = view[start : start + WRITE_SLICE]
                self._raw.sendall(piece)
                self.counter.add(sent=len(piece))
        except (TimeoutError, socket.timeout) as exc:
            raise TransferTimeout(f"{self.name}: the peer stopped reading for {self._timeout} s") from exc
        except OSError as exc:
            raise TransferError(f"{self.name}: write failed: {_reason(exc)}") from exc

    def recv_into(self, buffer: bytearray | memoryview, nbytes: int = 0) -> int:
        view = memoryview(buffer).cast("B")
        if nbytes:
            view = view[:nbytes]
        if self._pushback:
            n = min(len(view), len(self._pushback))
            view[:n] = self._pushback[:n]
            self._pushback = self._pushback[n:]
            return n
        try:
            n = self._raw.recv_into(view)
        except (TimeoutError, socket.timeout) as exc:
            raise TransferTimeout(f"{self.name}: no data from the peer for {self._timeout} s") from exc
        except ssl.SSLError as exc:  # TLS 1.3 reports a rejected client certificate at the first read
            raise TLSError(f"{self.name}: the TLS peer refused us: {exc.reason or exc} (check tls_client_cert/tls_client_key)") from exc
        except OSError as exc:
            raise TransferError(f"{self.name}: read failed: {_reason(exc)}") from exc
        self.counter.add(received=n)
        return n

    def recv(self, nbytes: int) -> bytes:
        buffer = bytearray(nbytes)
        n = self.recv_into(buffer)
        return bytes(buffer[:n])

    def makefile(self, mode: str = "rb", buffering: int = -1) -> io.BufferedReader:
        """A buffered reader, as ``http.client`` expects from a socket."""
        if "w" in mode:
            raise ValueError("Stream.makefile is read-only; use sendall")
        size = buffering if buffering and buffering > 0 else io.DEFAULT_BUFFER_SIZE
        self._readers += 1
        return io.BufferedReader(_StreamReader(self), size)

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout
        self._raw.settimeout(timeout)

    def gettimeout(self) -> float | None:
        return self._timeout

    def shutdown_write(self) -> None:
        """Half-close: tell the peer we will send no more."""
        try:
            self._raw.shutdown_write()
        except OSError:
            pass

    def abort(self) -> None:
        """Tear the connection down now, even while another thread blocks on it.

        A stalled engine keeps its temp data until the connection is gone, and
        ``close()`` alone does not end a socket that a reader still holds.
        """
        try:
            self._raw.abort()
        except OSError:
            pass

    def close(self) -> None:
        """Close now, or once the last makefile() reader is closed.

        http.client closes the connection before it reads a response that
        ends the connection (a 400 from a TLS port, a proxy's 403): the
        reader must still get those bytes, as it would from a socket.
        """
        self._closing = True
        if self._readers == 0 and not self.closed:
            self.closed = True
            self._raw.close()

    def _reader_closed(self) -> None:
        self._readers -= 1
        if self._closing:
            self.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Dialer(Protocol):
    """Opens streams to one endpoint; owns what they share (an SSH session)."""

    counter: ByteCounter

    @property
    def url(self) -> str: ...

    def dial(self, timeout: float | None = None) -> Stream: ...

    def close(self) -> None: ...


class _StreamReader(io.RawIOBase):
    def __init__(self, stream: Stream) -> None:
        self._stream = stream

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._stream._reader_closed()

    def readinto(self, buffer) -> int:  # type: ignore[override]
        return self._stream.recv_into(buffer)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__
