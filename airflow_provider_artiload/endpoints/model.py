"""What an endpoint is once parsed: the URL's parts plus its TLS or SSH settings; no parsing here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Kind = Literal["engine", "buildkit", "containerd"]

DEFAULT_SOCKETS: dict[str, str] = {
    "engine": "/var/run/docker.sock",
    "buildkit": "/run/buildkit/buildkitd.sock",
    "containerd": "/run/containerd/containerd.sock",
}
EXAMPLES: dict[str, str] = {
    "engine": "unix:///var/run/docker.sock, tcp://host:2376 or ssh://user@host:22",
    "buildkit": "unix:///run/buildkit/buildkitd.sock, tcp://host:1234, "
    "ssh://user@host:22 or docker://unix:///var/run/docker.sock",
    "containerd": "unix:///run/containerd/containerd.sock or ssh://user@host:22/run/k3s/containerd/containerd.sock",
}


@dataclass(frozen=True)
class TLSConfig:
    """TLS settings; certificate fields hold a file path or inline PEM."""

    verify: bool = True
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = field(default=None, repr=False)
    server_hostname: str | None = None


@dataclass(frozen=True)
class SSHConfig:
    """SSH settings, named as in apache-airflow-providers-ssh; ``host_key`` is ``type base64``."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    private_key_passphrase: str | None = field(default=None, repr=False)
    key_file: str | None = None
    host_key: str | None = None
    known_hosts: str | None = None
    no_host_key_check: bool = False
    allow_host_key_change: bool = False
    look_for_keys: bool = True
    conn_timeout: float = 10.0
    ciphers: tuple[str, ...] | None = None
    disabled_algorithms: Mapping[str, Any] | None = None
    compress: bool = False


@dataclass(frozen=True)
class Endpoint:
    """Where a daemon listens and how to reach it.

    ``address`` is the socket path for ``unix`` and the *remote* socket path
    for ``ssh``; ``engine`` is the engine endpoint behind ``docker://``.
    """

    scheme: Literal["unix", "tcp", "ssh", "docker"]
    address: str = ""
    host: str = ""
    port: int | None = None
    tls: TLSConfig | None = None
    ssh: SSHConfig | None = None
    engine: Endpoint | None = None

    @property
    def url(self) -> str:
        """The endpoint as a URL without secrets, for logs and XCom."""
        if self.scheme == "unix":
            return f"unix://{self.address}"
        if self.scheme == "tcp":
            return f"tcp://{_host_port(self.host, self.port)}"
        if self.scheme == "ssh":
            user = f"{self.ssh.username}@" if self.ssh and self.ssh.username else ""
            return f"ssh://{user}{_host_port(self.host, self.port)}{self.address}"
        return f"docker://{self.engine.url if self.engine else ''}"

    def __str__(self) -> str:
        return self.url


def with_credentials(endpoint: Endpoint, *, username: str | None, password: str | None) -> Endpoint:
    """Fill in the SSH user and password from a connection's login fields."""
    if endpoint.scheme == "docker" and endpoint.engine:
        return replace(endpoint, engine=with_credentials(endpoint.engine, username=username, password=password))
    if endpoint.scheme != "ssh" or endpoint.ssh is None:
        return endpoint
    return replace(
        endpoint,
        ssh=replace(endpoint.ssh, username=endpoint.ssh.username or username or None, password=password or None),
    )


def _host_port(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port else shown
