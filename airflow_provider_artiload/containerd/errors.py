"""containerd's gRPC status codes as artiload errors, translated at the boundary.

ContainerdError and BlobNotFound live here until the lead moves them into
``exceptions.py``; both are EngineErrors, so callers that handle engine
failures handle node failures too.

- UNAVAILABLE with a dial failure -> the dial's own ConnectError/SSHAuthError/...
- UNAVAILABLE otherwise -> ConnectError before any data moved, TransferError after
- DEADLINE_EXCEEDED -> TransferTimeout
- NOT_FOUND on an image -> ImageNotFound; on a blob -> BlobNotFound
- anything else -> ContainerdError with the code name and containerd's message
"""

from __future__ import annotations

import grpc

from airflow_provider_artiload.transport.grpc import DialBridge
from airflow_provider_artiload.exceptions import (
    ArtiloadError,
    ConnectError,
    EngineError,
    TransferError,
    TransferTimeout,
)


class ContainerdError(EngineError):
    """containerd refused or failed a call; ``code`` is the gRPC status name (``ALREADY_EXISTS``)."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class BlobNotFound(ContainerdError):
    """The content store has no blob with that digest."""


def status_code(exc: BaseException) -> grpc.StatusCode | None:
    code = getattr(exc, "code", None)
    return code() if callable(code) else None


def translate(
    exc: grpc.RpcError,
    *,
    where: str,
    what: str,
    bridge: DialBridge | None = None,
    started: bool = False,
) -> ArtiloadError:
    """An RpcError from ``what`` as our error; ``started`` says whether data had moved already."""
    code = status_code(exc)
    details = (exc.details() if hasattr(exc, "details") else None) or str(exc)
    if code == grpc.StatusCode.UNAVAILABLE and not _is_lock(details):
        dial_error = bridge.dial_error if bridge is not None else None
        if isinstance(dial_error, ArtiloadError):
            return type(dial_error)(str(dial_error))
        if started:
            return TransferError(f"containerd at {where}: the connection broke during {what} ({details})")
        cause = f": {dial_error}" if dial_error else f" ({details})"
        return ConnectError(f"cannot reach containerd at {where}{cause}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return TransferTimeout(f"containerd at {where}: {what} timed out")
    if code == grpc.StatusCode.CANCELLED and started:
        return TransferError(f"containerd at {where}: {what} was cancelled ({details})")
    name = code.name if code is not None else None
    cls = BlobNotFound if code == grpc.StatusCode.NOT_FOUND and "content digest" in details else ContainerdError
    return cls(f"containerd at {where}: {what} failed: {details}", code=name)


def _is_lock(details: str) -> bool:
    """containerd answers UNAVAILABLE when another writer holds a ref: not a connection problem."""
    return "locked" in details


__all__ = ["BlobNotFound", "ContainerdError", "status_code", "translate"]
