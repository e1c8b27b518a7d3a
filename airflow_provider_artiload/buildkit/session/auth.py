"""Auth: registry credentials for the daemon (``moby.filesync.v1.Auth/Credentials``).

Only ``Credentials`` is served; the token methods are not advertised, so the
daemon falls back to basic credentials. An unknown host gets an empty answer
(anonymous), as BuildKit's Go provider does.
"""

from __future__ import annotations

from collections.abc import Mapping

from airflow_provider_artiload.buildkit._proto import auth_pb2, auth_pb2_grpc

DOCKER_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/")


def normalize_host(host: str) -> str:
    host = host.strip().lower()
    if host in DOCKER_HUB_ALIASES:
        return "docker.io"
    for prefix in ("https://", "http://"):
        if host.startswith(prefix):
            host = host[len(prefix) :]
    return host.rstrip("/")


class AuthProvider:
    """``{"registry.example.com:5000": ("user", "password-or-token")}``."""

    def __init__(self, credentials: Mapping[str, tuple[str, str]]) -> None:
        self._credentials = {normalize_host(host): value for host, value in credentials.items()}
        self.requested: list[str] = []

    def __repr__(self) -> str:
        return f"AuthProvider(hosts={sorted(self._credentials)})"

    def register(self, server) -> None:
        auth_pb2_grpc.add_AuthServicer_to_server(self, server)

    def Credentials(self, request, context) -> auth_pb2.CredentialsResponse:  # noqa: N802
        self.requested.append(request.Host)
        found = self._credentials.get(normalize_host(request.Host))
        if not found:
            return auth_pb2.CredentialsResponse()
        return auth_pb2.CredentialsResponse(Username=found[0], Secret=found[1])
