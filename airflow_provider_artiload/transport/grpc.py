"""gRPC over any artiload Stream, and gRPC failures as artiload errors: shared by BuildKit and containerd.

grpcio cannot be handed a connected socket. So :class:`DialBridge` listens on
a unix socket inside an owner-only temp directory; for each connection grpcio
makes, it calls the injected ``dial()`` (a unix/TCP/TLS/SSH stream, or an
engine's ``/grpc`` upgrade) and copies bytes both ways on two threads.
:class:`BridgedChannel` is a channel over such a bridge, opened on first use.
:func:`pipe` is the same two-way copy, reused by the BuildKit session.

A failed call is translated once, at the client's boundary, by one table
(:data:`STATUS_ERRORS`, as httpcore's ``map_exceptions``):

- UNAVAILABLE after a failed dial -> the dial's own ConnectError/SSHAuthError/...
- UNAVAILABLE -> ConnectError before any data moved, TransferError after
- DEADLINE_EXCEEDED -> TransferTimeout
- CANCELLED after data moved -> TransferError
- anything else -> the peer's own error (BuildError, ContainerdError) with its message
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol

import grpc

from airflow_provider_artiload.exceptions import ArtiloadError, ConnectError, TransferError, TransferTimeout

log = logging.getLogger(__name__)

COPY_CHUNK = 1 << 20
# gRPC's 4 MiB default is too small for large status batches and our file chunks.
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    ("grpc.enable_retries", 0),
    ("grpc.use_local_subchannel_pool", 1),
]


class Duplex(Protocol):
    """What :func:`pipe` copies between: an artiload Stream or a wrapped socket."""

    def recv_into(self, buffer: memoryview) -> int: ...
    def sendall(self, data: memoryview) -> None: ...
    def shutdown_write(self) -> None: ...
    def abort(self) -> None: ...
    def close(self) -> None: ...


class SocketDuplex:
    """A plain socket with the Stream method names."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def recv_into(self, buffer: memoryview) -> int:
        return self.sock.recv_into(buffer)

    def sendall(self, data: memoryview) -> None:
        self.sock.sendall(data)

    def shutdown_write(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def abort(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()


def pipe(a: Duplex, b: Duplex, *, name: str, on_close: Callable[[], None] | None = None) -> list[threading.Thread]:
    """Copy a->b and b->a on two daemon threads; both ends are closed when both directions end."""
    remaining = [2]
    lock = threading.Lock()

    def copy(src: Duplex, dst: Duplex) -> None:
        buffer = bytearray(COPY_CHUNK)
        view = memoryview(buffer)
        try:
            while True:
                n = src.recv_into(view)
                if not n:
                    dst.shutdown_write()
                    break
                dst.sendall(view[:n])
        except Exception as exc:  # noqa: BLE001 - one side broke: tear both down
            log.debug("%s: pipe ended: %s", name, exc)
            a.abort()
            b.abort()
        finally:
            with lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                for end in (a, b):
                    try:
                        end.close()
                    except Exception:  # noqa: BLE001
                        pass
                if on_close:
                    on_close()

    threads = [
        threading.Thread(target=copy, args=(a, b), name=f"{name}-up", daemon=True),
        threading.Thread(target=copy, args=(b, a), name=f"{name}-down", daemon=True),
    ]
    for thread in threads:
        thread.start()
    return threads


def private_socket_path(prefix: str) -> tuple[str, str]:
    """(directory, socket path) in a fresh 0700 temp directory with a short path."""
    base = "/tmp" if os.path.isdir("/tmp") else None
    directory = tempfile.mkdtemp(prefix=prefix, dir=base)
    os.chmod(directory, 0o700)
    return directory, os.path.join(directory, "s")


def remove_at_exit(owner: object, directory: str) -> None:
    """Remove ``directory`` when ``owner`` is collected, or at interpreter exit at the latest."""
    weakref.finalize(owner, shutil.rmtree, directory, True)


class DialBridge:
    """Listens on a private unix socket; each accepted connection is piped to a fresh ``dial()``."""

    def __init__(self, dial: Callable[[], Duplex], *, name: str) -> None:
        self._dial = dial
        self.name = name
        self.dial_error: BaseException | None = None  # the last dial failure, for a clear error message
        self._directory, self.path = private_socket_path("artiload-grpc-")
        remove_at_exit(self, self._directory)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(16)
        self._closed = False
        self._lock = threading.Lock()
        self._open: set[Duplex] = set()
        self._thread = threading.Thread(target=self._accept, name=f"{name}-accept", daemon=True)
        self._thread.start()

    @property
    def target(self) -> str:
        return f"unix:{self.path}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name=f"{self.name}-dial", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        local = SocketDuplex(conn)
        try:
            remote = self._dial()
        except BaseException as exc:  # noqa: BLE001 - reported through dial_error
            self.dial_error = exc
            log.debug("%s: dial failed: %s", self.name, exc)
            local.abort()
            local.close()
            return
        self.dial_error = None
        with self._lock:
            if self._closed:
                remote.close()
                local.close()
                return
            self._open.update((local, remote))

        def forget() -> None:
            with self._lock:
                self._open.discard(local)
                self._open.discard(remote)

        pipe(local, remote, name=self.name, on_close=forget)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            ends = list(self._open)
        try:
            self._listener.close()
        except OSError:
            pass
        for end in ends:
            end.abort()
        shutil.rmtree(self._directory, ignore_errors=True)


class BridgedChannel:
    """One grpcio channel through a :class:`DialBridge`, opened on first use; the BuildKit and containerd clients share it."""

    def __init__(self, dial: Callable[[], Duplex], *, name: str) -> None:
        self._dial = dial
        self._name = name
        self._lock = threading.Lock()
        self._bridge: DialBridge | None = None
        self._channel: grpc.Channel | None = None

    @property
    def channel(self) -> grpc.Channel:
        """The channel, dialling nothing yet: grpcio connects through the bridge on the first call."""
        with self._lock:
            if self._channel is None:
                self._bridge = DialBridge(self._dial, name=self._name)
                self._channel = grpc.insecure_channel(self._bridge.target, options=CHANNEL_OPTIONS)
            return self._channel

    @property
    def dial_error(self) -> BaseException | None:
        """The last dial failure: what an UNAVAILABLE really was (a refused SSH key, a missing socket)."""
        bridge = self._bridge
        return bridge.dial_error if bridge is not None else None

    def close(self) -> None:
        """Close the channel and the bridge; the next use opens fresh ones."""
        with self._lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = None
            if self._bridge is not None:
                self._bridge.close()
                self._bridge = None


# gRPC status -> (our error, its message), for every peer. A code not listed is the peer's own
# error (BuildError, ContainerdError): the call was refused, and the peer's message says why.
STATUS_ERRORS: dict[grpc.StatusCode, tuple[type[ArtiloadError], str]] = {
    grpc.StatusCode.UNAVAILABLE: (ConnectError, "cannot reach {peer} at {where}{cause}"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (TransferTimeout, "{peer} at {where}: {what} timed out"),
}
# Once data has moved, a lost or cancelled stream is a broken transfer, not a failed connect.
STARTED_ERRORS: dict[grpc.StatusCode, tuple[type[ArtiloadError], str]] = {
    grpc.StatusCode.UNAVAILABLE: (TransferError, "{peer} at {where}: the connection broke during {what} ({details})"),
    grpc.StatusCode.CANCELLED: (TransferError, "{peer} at {where}: {what} was cancelled ({details})"),
}


def status_code(exc: BaseException) -> grpc.StatusCode | None:
    """The status of an RpcError; None for an error that carries none."""
    code = getattr(exc, "code", None)
    return code() if callable(code) else None


def status_details(exc: BaseException) -> str:
    """The peer's message, or the error's text when it sent none."""
    details = getattr(exc, "details", None)
    return (details() if callable(details) else None) or str(exc)


def translate_rpc_error(
    exc: grpc.RpcError,
    *,
    peer: str,
    where: str,
    what: str,
    fallback: Callable[[str], ArtiloadError],
    dial_error: BaseException | None = None,
    started: bool = False,
) -> ArtiloadError:
    """``exc`` from ``what`` on ``peer`` at ``where`` as our error, by :data:`STATUS_ERRORS`.

    A dial that failed with our own error (ConnectError, SSHAuthError,
    HostKeyError...) is what the caller gets for UNAVAILABLE: grpcio only
    saw the bridge's socket close. ``started`` says whether data had moved.
    """
    code = status_code(exc)
    details = status_details(exc)
    if code == grpc.StatusCode.UNAVAILABLE and isinstance(dial_error, ArtiloadError):
        return type(dial_error)(str(dial_error))
    rule = _rule(code, started)
    if rule is None:
        return fallback(f"{peer} at {where}: {what} failed: {details}")
    cls, template = rule
    cause = f": {dial_error}" if dial_error else f" ({details})"
    return cls(template.format(peer=peer, where=where, what=what, details=details, cause=cause))


def _rule(code: grpc.StatusCode | None, started: bool) -> tuple[type[ArtiloadError], str] | None:
    if code is None:
        return None
    return (STARTED_ERRORS.get(code) if started else None) or STATUS_ERRORS.get(code)
