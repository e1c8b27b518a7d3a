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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from airflow_provider_artiload.exceptions import EngineError, ImageNotFound, TransferError
from airflow_provider_artiload.transport import Dialer, Stream

MAX_UPGRADE_HEADER = 64 << 10


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
