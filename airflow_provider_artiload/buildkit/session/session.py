"""The client side of a BuildKit session: a gRPC *server* the daemon calls back into.

A :class:`Session` is a grpcio server on a private unix socket plus a list of
attachables (FileSync, FileSend, Secrets, Auth...), each registering its
services. The methods advertised to the daemon are derived from what was
registered, never listed by hand. Health (``grpc.health.v1.Health``) is
always served: the daemon checks it about every second.

Attaching joins the daemon to that server, one of two ways:

- ``session_dial(headers) -> Stream``: an engine's ``POST /session`` hijack;
  the daemon then speaks HTTP/2 as the client over that stream, which we pipe
  into a new connection to our server;
- otherwise the ``Control.Session`` bidi stream: the same headers go as gRPC
  metadata and each BytesMessage carries raw HTTP/2 bytes both ways.
"""

from __future__ import annotations

import logging
import queue
import secrets as _secrets
import shutil
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent import futures
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from airflow_provider_artiload.buildkit._proto import control_pb2
from airflow_provider_artiload.transport.grpc import (
    CHANNEL_OPTIONS,
    SocketDuplex,
    pipe,
    private_socket_path,
    remove_at_exit,
)

log = logging.getLogger(__name__)

HEADER_ID = "X-Docker-Expose-Session-Uuid"
HEADER_NAME = "X-Docker-Expose-Session-Name"
HEADER_SHARED_KEY = "X-Docker-Expose-Session-Sharedkey"
HEADER_METHOD = "X-Docker-Expose-Session-Grpc-Method"
COPY_CHUNK = 1 << 20

SessionDial = Callable[[Sequence[tuple[str, str]]], Any]  # headers -> artiload Stream


class Attachable(Protocol):
    """A session feature: registers its gRPC services on the session's server."""

    def register(self, server: Any) -> None: ...


class Registrar:
    """Wraps the grpcio server for generated ``add_*Servicer_to_server``; records every method path."""

    def __init__(self, server: grpc.Server) -> None:
        self._server = server
        self.methods: list[str] = []

    def add_generic_rpc_handlers(self, handlers: Iterable[Any]) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self._server.add_registered_method_handlers(service, handlers)
        self.methods.extend(f"/{service}/{name}" for name in handlers)


class Session:
    """One build's session: start, attach, close (or use as a context manager)."""

    def __init__(
        self, attachables: Sequence[Attachable], *, name: str = "artiload", shared_key: str = "", max_workers: int = 16
    ) -> None:
        self.id = _secrets.token_hex(12)
        self.name = name
        self.shared_key = shared_key
        self.attachables = list(attachables)
        self._max_workers = max_workers
        self._server: grpc.Server | None = None
        self._directory = ""
        self.path = ""
        self.methods: list[str] = []
        self._ends: list[Any] = []
        self._call: Any = None
        self.closed = threading.Event()  # set when the daemon's side of the session goes away

    def start(self) -> Session:
        self._directory, self.path = private_socket_path("artiload-sess-")
        remove_at_exit(self, self._directory)
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="buildkit-session"),
            options=CHANNEL_OPTIONS,
        )
        registrar = Registrar(server)
        health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), registrar)
        for attachable in self.attachables:
            attachable.register(registrar)
        self.methods = list(dict.fromkeys(registrar.methods))
        server.add_insecure_port(f"unix:{self.path}")
        server.start()
        self._server = server
        return self

    def headers(self) -> list[tuple[str, str]]:
        """The session headers, one Grpc-Method line per registered method."""
        return [
            (HEADER_ID, self.id),
            (HEADER_NAME, self.name),
            (HEADER_SHARED_KEY, self.shared_key),
            *((HEADER_METHOD, method) for method in self.methods),
        ]

    def _connect_server(self) -> SocketDuplex:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.path)
        return SocketDuplex(sock)

    def attach_hijacked(self, session_dial: SessionDial) -> None:
        """Attach through an engine's ``/session`` hijack: the daemon is the HTTP/2 client."""
        remote = session_dial(self.headers())
        local = self._connect_server()
        self._ends += [remote, local]
        pipe(remote, local, name=f"session-{self.id[:8]}", on_close=self.closed.set)

    def attach_control(self, control_stub: Any) -> None:
        """Attach through ``Control.Session``: HTTP/2 bytes inside BytesMessages."""
        local = self._connect_server()
        self._ends.append(local)
        metadata = [(name.lower(), value) for name, value in self.headers()]

        def upstream() -> Iterator[control_pb2.BytesMessage]:
            buffer = bytearray(COPY_CHUNK)
            while True:
                try:
                    n = local.recv_into(memoryview(buffer))
                except OSError:
                    return
                if not n:
                    return
                yield control_pb2.BytesMessage(data=bytes(buffer[:n]))

        call = control_stub.Session(upstream(), metadata=metadata)
        self._call = call

        def downstream() -> None:
            try:
                for message in call:
                    local.sendall(memoryview(message.data))
            except (grpc.RpcError, OSError) as exc:
                log.debug("session %s ended: %s", self.id, exc)
            finally:
                local.abort()
                self.closed.set()

        threading.Thread(target=downstream, name=f"session-{self.id[:8]}", daemon=True).start()

    def close(self) -> None:
        if self._call is not None:
            self._call.cancel()
        for end in self._ends:
            try:
                end.abort()
                end.close()
            except Exception:  # noqa: BLE001
                pass
        if self._server is not None:
            self._server.stop(grace=None)
            self._server = None
        if self._directory:
            shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self) -> Session:
        return self if self._server is not None else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def check_health(target: str, timeout: float = 5.0) -> str:
    """Ask a session server's health service (for tests and diagnostics)."""
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


class RequestReader:
    """Drains a request iterator on a thread into a queue, so a handler can send while the peer sends."""

    END = object()

    def __init__(self, requests: Iterator[Any], *, name: str) -> None:
        self.queue: queue.Queue[Any] = queue.Queue()
        self.error: BaseException | None = None
        self._requests = requests
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def _run(self) -> None:
        try:
            for request in self._requests:
                self.queue.put(request)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self.error = exc
        finally:
            self.queue.put(self.END)

    def get(self) -> Any:
        return self.queue.get()
