"""A transport with no sockets: an in-memory HTTP/1.1 peer, for protocol tests.

:class:`MockDialer` hands out streams whose far end is a Python function:
each complete request (Content-Length or chunked body) is passed to
``handler(Request)``, and what it returns (status, headers, body chunks)
is what the client reads. The Engine API client, the HTTP framing and the
load planning can so be tested byte for byte without an engine, like
httpcore's mock backend; real engines are for the integration tests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from airflow_provider_artiload.transport.base import ByteCounter, Stream


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Response:
    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    chunked: bool = False

    def encode(self) -> bytes:
        reason = {101: "Switching Protocols", 200: "OK", 404: "Not Found", 500: "Internal Server Error"}
        lines = [f"HTTP/1.1 {self.status} {reason.get(self.status, 'Status')}"]
        parts = [self.body] if isinstance(self.body, (bytes, bytearray)) else list(self.body)
        headers = dict(self.headers)
        if self.status != 101:
            if self.chunked:
                headers["Transfer-Encoding"] = "chunked"
            else:
                headers["Content-Length"] = str(sum(len(p) for p in parts))
        lines += [f"{k}: {v}" for k, v in headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        if not self.chunked:
            return head + b"".join(parts)
        return head + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p) + b"0\r\n\r\n"


Handler = Callable[[Request], Response]


class MockConnection:
    """The RawConnection of a mock stream: parses requests as they arrive, answers with the handler."""

    def __init__(self, handler: Handler, log: list[Request]) -> None:
        self._handler = handler
        self._log = log
        self._inbox = bytearray()
        self._outbox = bytearray()
        self._ready = threading.Condition()
        self.closed = False

    def sendall(self, data: memoryview) -> None:
        if self.closed:
            raise BrokenPipeError("mock connection closed")
        self._inbox += data
        while (request := self._take_request()) is not None:
            self._log.append(request)
            with self._ready:
                self._outbox += self._handler(request).encode()
                self._ready.notify_all()

    def recv_into(self, buffer: memoryview) -> int:
        with self._ready:
            while not self._outbox and not self.closed:
                if not self._ready.wait(timeout=5):
                    raise TimeoutError("mock peer has nothing to say (the request is incomplete?)")
            n = min(len(buffer), len(self._outbox))
            buffer[:n] = self._outbox[:n]
            del self._outbox[:n]
            return n

    def settimeout(self, timeout: float | None) -> None:
        pass

    def abort(self) -> None:
        self.close()

    def shutdown_write(self) -> None:
        pass

    def close(self) -> None:
        with self._ready:
            self.closed = True
            self._ready.notify_all()

    def _take_request(self) -> Request | None:
        head, sep, rest = bytes(self._inbox).partition(b"\r\n\r\n")
        if not sep:
            return None
        first, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _ = first.split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
        if headers.get("transfer-encoding") == "chunked":
            body, used = _dechunk(rest)
            if body is None:
                return None
        else:
            length = int(headers.get("content-length") or 0)
            if len(rest) < length:
                return None
            body, used = rest[:length], length
        del self._inbox[: len(head) + 4 + used]
        return Request(method, path, headers, body)


def _dechunk(data: bytes) -> tuple[bytes | None, int]:
    body, pos = bytearray(), 0
    while True:
        line_end = data.find(b"\r\n", pos)
        if line_end < 0:
            return None, 0
        size = int(data[pos:line_end], 16)
        start = line_end + 2
        if len(data) < start + size + 2:
            return None, 0
        body += data[start : start + size]
        pos = start + size + 2
        if size == 0:
            return bytes(body), pos


class MockDialer:
    """A Dialer whose streams reach ``handler``; ``requests`` records every request, in order."""

    def __init__(self, handler: Handler, *, url: str = "mock://engine") -> None:
        self._handler = handler
        self._url = url
        self.requests: list[Request] = []
        self.counter = ByteCounter()

    @property
    def url(self) -> str:
        return self._url

    def dial(self, timeout: float | None = None) -> Stream:
        return Stream(MockConnection(self._handler, self.requests), name=self._url, counter=self.counter)

    def close(self) -> None:
        pass
