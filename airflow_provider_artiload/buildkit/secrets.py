"""Secrets: serve ``RUN --mount=type=secret,id=X`` values to the daemon.

Values are bytes held in memory for the build only. They are never logged:
an unknown id is answered NOT_FOUND (the daemon then leaves a non-required
secret absent), naming the id, never a value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import grpc

from airflow_provider_artiload.buildkit._proto import secrets_pb2, secrets_pb2_grpc

SecretValue = bytes | Callable[[], bytes]


class SecretsProvider:
    """``{"npmrc": b"...", "token": lambda: fetch()}``: a callable is called when the daemon asks."""

    def __init__(self, secrets: Mapping[str, SecretValue]) -> None:
        self._secrets = dict(secrets)
        self.requested: list[str] = []  # ids asked for, for logs and tests

    def __repr__(self) -> str:
        return f"SecretsProvider(ids={sorted(self._secrets)})"

    def register(self, server) -> None:
        secrets_pb2_grpc.add_SecretsServicer_to_server(self, server)

    def GetSecret(self, request, context) -> secrets_pb2.GetSecretResponse:  # noqa: N802
        self.requested.append(request.ID)
        value = self._secrets.get(request.ID)
        if value is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"secret {request.ID} not found")
        data = value() if callable(value) else value
        if isinstance(data, str):
            data = data.encode()
        return secrets_pb2.GetSecretResponse(data=data)
