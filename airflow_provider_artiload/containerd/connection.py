"""The connection every containerd service shares: channel, metadata, unary calls, error translation.

containerd speaks plain gRPC on its socket; grpcio cannot be handed a
connected socket, so the channel goes through ``transport/grpc.py``'s
bridge to ``dial()``: the SSH case needs nothing on the node but sshd.

Every call carries the namespace as metadata ``containerd-namespace``; while
a thread holds a lease (``Leases.lease``) its calls also carry
``containerd-lease``, so what they create is safe from garbage collection
until the lease is deleted. This module imports nothing else from
``containerd/`` but its errors: the services import it, never the reverse.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

from airflow_provider_artiload.containerd.errors import ContainerdError, is_lock, translate
from airflow_provider_artiload.exceptions import ArtiloadError
from airflow_provider_artiload.transport.grpc import BridgedChannel, Duplex, status_code


class Connection:
    """One namespace on one containerd; connects on first use, through ``dial``."""

    def __init__(
        self, dial: Callable[[], Duplex], *, namespace: str = "k8s.io", where: str = "containerd", timeout: float = 60.0
    ) -> None:
        if not namespace:
            raise ContainerdError("a containerd namespace must not be empty (kubelet and k3s use 'k8s.io')")
        self.namespace = namespace
        self.where = where
        self.timeout = timeout  # for unary calls; streams are bounded by the transport instead
        self._grpc = BridgedChannel(dial, name="containerd-grpc")
        self._local = threading.local()

    @property
    def channel(self) -> grpc.Channel:
        return self._grpc.channel

    @property
    def current_lease(self) -> str | None:
        """The lease this thread's calls carry, if any."""
        return getattr(self._local, "lease", None)

    @current_lease.setter
    def current_lease(self, lease_id: str | None) -> None:
        self._local.lease = lease_id

    def metadata(self, *, leased: bool = True) -> tuple[tuple[str, str], ...]:
        """The namespace, and the current lease unless ``leased`` is False (an ingest that must outlive it)."""
        lease = self.current_lease if leased else None
        extra = (("containerd-lease", lease),) if lease else ()
        return (("containerd-namespace", self.namespace), *extra)

    def error(self, exc: grpc.RpcError, what: str, *, started: bool = False) -> ArtiloadError:
        return translate(exc, where=self.where, what=what, dial_error=self._grpc.dial_error, started=started)

    def call(self, stub_class: type, method: str, request: Any, what: str) -> Any:
        """A unary call with our metadata and deadline; grpc errors translated."""
        try:
            return self._unary(stub_class, method, request)
        except grpc.RpcError as exc:
            raise self.error(exc, what) from exc

    def call_or_none(self, stub_class: type, method: str, request: Any, what: str) -> Any:
        """Like :meth:`call`, but NOT_FOUND is None (e.g. a blob the node lacks)."""
        try:
            return self._unary(stub_class, method, request)
        except grpc.RpcError as exc:
            if status_code(exc) == grpc.StatusCode.NOT_FOUND:
                return None
            raise self.error(exc, what) from exc

    def _unary(self, stub_class: type, method: str, request: Any) -> Any:
        """One call, retried once when the connection it went out on had just broken.

        After a cut (a dropped SSH link) grpcio fails the next call on the dead
        connection before it notices and redials. Creates with a fixed name
        that did land come back ALREADY_EXISTS, which callers handle.
        """
        for attempt in (1, 2):
            try:
                return getattr(stub_class(self.channel), method)(request, metadata=self.metadata(), timeout=self.timeout)
            except grpc.RpcError as exc:
                transient = status_code(exc) == grpc.StatusCode.UNAVAILABLE and not is_lock(exc.details() or "")
                if attempt == 2 or not transient or self._grpc.dial_error:
                    raise
                time.sleep(0.1)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._grpc.close()


__all__ = ["Connection"]
