"""Byte transports: open a :class:`Stream` to any endpoint of the connection model."""

from __future__ import annotations

from airflow_provider_artiload.endpoints import Endpoint
from airflow_provider_artiload.transport.base import ByteCounter, Dialer, Stream
from airflow_provider_artiload.transport.sockets import SocketDialer

__all__ = ["ByteCounter", "Dialer", "Stream", "open_dialer"]


def open_dialer(endpoint: Endpoint, *, alpn: tuple[str, ...] = ()) -> Dialer:
    """The dialer for a unix, tcp or ssh endpoint; ``docker://`` is dialed through its engine.

    ``alpn`` applies to TLS (``("h2",)`` when the stream will carry gRPC).
    """
    if endpoint.scheme == "docker":
        raise ValueError(f"{endpoint.url} is reached through its engine endpoint; dial endpoint.engine")
    if endpoint.scheme == "ssh":
        from airflow_provider_artiload.transport.ssh import SSHDialer  # paramiko only when needed

        return SSHDialer(endpoint)
    return SocketDialer(endpoint, alpn=alpn)
