"""HTTP/1.1 to a Docker Engine over any artiload Stream.

docker-py is not used here: its transports dial SSH by running
``docker system dial-stdio`` (or direct-tcpip) and it cannot hand over an h2c
upgrade, while we need streamlocal channels, one byte counter for every
transport, a socket we can shut down on a stall, and the ``/grpc`` and
``/session`` upgrades for BuildKit. The stdlib's ``http.client`` does the
HTTP/1.1 framing (chunked bodies both ways); this module only gives it our
streams and adds the upgrade handshake.
"""

from __future__ import annotations

import http.client
import json
import sys
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from airflow_provider_artiload.exceptions import EngineError, ImageNotFound, TransferError
from airflow_provider_artiload.transport import Dialer, Stream

MAX_UPGRADE_HEADER = 64 << 10
BODY_PIECE = 1 << 20  # what one piece of a streamed body holds: the hash, the spool and the file each see few, large pieces
MAX_CHUNK_LINE = 4096  # a chunk-size line (size, extensions) or a trailer line
HEX_DIGITS = b"0123456789abcdefABCDEF"
KEPT_PIECES = 24  # piece buffers a body keeps for reuse: more than the fan-out's window holds at once


class EngineConnection(http.client.HTTPConnection):
    """An ``http.client`` connection whose socket comes from a Dialer."""

    def __init__(self, dialer: Dialer, timeout: float | None) -> None:
        super().__init__("docker", timeout=timeout)  # the Host the docker CLI sends
        self._dialer = dialer

    def connect(self) -> None:
        self.sock = self._dialer.dial(timeout=self.timeout)

    @property
    def stream(self) -> Stream | None:
        return self.sock  # type: ignore[return-value]


def path(template: str, *args: str, query: Mapping[str, Any] | None = None) -> str:
    """Build a request path, quoting each argument as one path segment."""
    built = template.format(*(quote(a, safe="") for a in args))
    params = {k: v for k, v in (query or {}).items() if v is not None}
    return f"{built}?{urlencode(params)}" if params else built


def raise_for_status(response: http.client.HTTPResponse, *, where: str, what: str) -> None:
    """Raise EngineError (ImageNotFound on 404) with the engine's own message."""
    if response.status < 400:
        return
    body = response.read(64 << 10)
    try:
        message = json.loads(body).get("message") or body.decode(errors="replace")
    except ValueError:
        message = body.decode(errors="replace").strip()
    error_class = ImageNotFound if response.status == 404 else EngineError
    raise error_class(f"{where}: {what} failed ({response.status}): {message}", status=response.status)


def json_lines(response: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    """The JSON messages of a progress stream (one per line, as the engine writes them)."""
    for raw in response:
        line = raw.strip()
        if not line:
            continue
        try:
            yield json.loads(line)
        except ValueError:
            raise EngineError(f"engine sent a line that is not JSON: {line[:200]!r}") from None


def body_pieces(response: http.client.HTTPResponse, *, piece: int = BODY_PIECE) -> Iterator[bytearray]:
    """The response body in pieces of ``piece`` bytes (the last one shorter).

    Why not ``response.read(n)``: for a chunked body (how the engine sends
    an export, in 32 KiB chunks) ``http.client`` reads each chunk into new
    bytes and joins them, one more copy of every byte into one more new
    buffer. Here the chunk framing is read from the response's buffered
    reader and each chunk's data goes straight into the piece (``readinto``
    bypasses the small buffer for large reads), so the kernel's copy is the
    only one, and a piece's buffer is used again once nothing refers to it
    (:class:`PieceBuffers`): keep a piece, or a view of it, as long as you
    need it, never a pointer past that. A body that ends early, or framing
    that is not HTTP/1.1's, raises.
    """
    fp = response.fp
    if fp is None:  # already read or closed
        return
    buffers = PieceBuffers(piece)
    buffer, filled = buffers.take(), 0
    view = memoryview(buffer)
    for size in _chunk_sizes(fp) if response.chunked else [response.length]:
        while size is None or size:
            wanted = piece - filled if size is None else min(size, piece - filled)
            got = fp.readinto(view[filled : filled + wanted])
            if not got:
                if size is None:  # a body delimited by the end of the connection
                    break
                raise TransferError(f"the engine closed the stream early: {size} bytes of the body missing")
            filled += got
            size = None if size is None else size - got
            if filled == piece:
                view.release()
                yield buffer
                buffer, filled = buffers.take(), 0
                view = memoryview(buffer)
    view.release()
    if filled:
        del buffer[filled:]
        yield buffer


class PieceBuffers:
    """Buffers for a body's pieces, each reused once nothing else refers to it.

    A new 1 MiB buffer costs 256 page faults and a zero fill (about 0.4
    CPU-s per GiB, measured allocating one per MiB written). A piece is held downstream for as long
    as its readers need it (the fan-out's window, a writer), so the oldest
    buffer is taken again only when CPython's exact reference count says
    this pool is its last holder; otherwise a new one is made.
    """

    def __init__(self, size: int, *, keep: int = KEPT_PIECES) -> None:
        self.size = size
        self._keep = keep
        self._buffers: deque[bytearray] = deque()

    def take(self) -> bytearray:
        if self._buffers and sys.getrefcount(self._buffers[0]) == 2:  # the deque's reference and the argument's
            self._buffers.rotate(-1)
            return self._buffers[-1]
        buffer = bytearray(self.size)
        if len(self._buffers) < self._keep:
            self._buffers.append(buffer)
        return buffer


def _chunk_sizes(fp: Any) -> Iterator[int]:
    """The size of each chunk of a chunked body, read from ``fp``; the caller reads each chunk's data before the next."""
    while size := _chunk_size(_line(fp, "chunk size")):
        yield size
        if fp.read(2) != b"\r\n":
            raise EngineError(f"malformed chunked body: chunk of {size} bytes not followed by CRLF")
    while fp.readline(MAX_CHUNK_LINE + 1) not in (b"\r\n", b"\n", b""):  # trailers: none that we use; the end
        pass  # of the connection after the last chunk is as good as the empty line (as in http.client)


def _chunk_size(line: bytes) -> int:
    text = line.split(b";", 1)[0].strip()  # extensions after ";": none that we use
    if not text or text.strip(HEX_DIGITS):
        raise EngineError(f"malformed chunked body: bad chunk size line {line[:80]!r}")
    return int(text, 16)


def _line(fp: Any, what: str) -> bytes:
    line = fp.readline(MAX_CHUNK_LINE + 1)
    if not line.endswith(b"\n"):
        if len(line) > MAX_CHUNK_LINE:
            raise EngineError(f"malformed chunked body: {what} line longer than {MAX_CHUNK_LINE} bytes")
        raise TransferError(f"the engine closed the stream early: no {what} line")
    return line


def upgrade(
    stream: Stream, request_path: str, *, protocol: str = "h2c", headers: Sequence[tuple[str, str]] = ()
) -> Stream:
    """Hijack ``stream`` with an HTTP/1.1 Upgrade (the engine's /grpc and /session).

    Returns the same stream, now speaking ``protocol``. Bytes that arrived
    glued to the ``101`` reply are pushed back so the next reader sees them.
    """
    lines = [
        f"POST {request_path} HTTP/1.1",
        "Host: docker",
        f"Upgrade: {protocol}",
        "Connection: Upgrade",
        "Content-Length: 0",
        *(f"{name}: {value}" for name, value in headers),
    ]
    stream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    reply = bytearray()
    while b"\r\n\r\n" not in reply:
        chunk = stream.recv(4096)
        if not chunk:
            raise TransferError(f"{stream.name}: connection closed during the {request_path} upgrade")
        reply += chunk
        if len(reply) > MAX_UPGRADE_HEADER:
            raise EngineError(f"{stream.name}: the {request_path} upgrade reply has no end of headers")
    head, _, rest = bytes(reply).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    if " 101 " not in f"{status_line} ":
        raise EngineError(f"{stream.name}: POST {request_path} was not upgraded: {status_line} {rest[:200]!r}")
    if rest:
        stream.unread(rest)
    return stream


def chunked(body: Iterable[bytes | memoryview]) -> Iterator[bytes | memoryview]:
    """HTTP/1.1 chunked framing, written as separate pieces so no chunk is copied.

    (``http.client``'s own framing concatenates each chunk with its header:
    one extra copy of every byte.) The terminating zero-size chunk is sent
    only once ``body`` is exhausted, so a body that raises leaves the request
    visibly unfinished to the engine.
    """
    for piece in body:
        if piece:  # an empty chunk would end the body early
            yield b"%x\r\n" % len(piece)
            yield piece
            yield b"\r\n"
    yield b"0\r\n\r\n"
