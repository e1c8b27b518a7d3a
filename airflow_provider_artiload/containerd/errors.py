"""containerd's refinements of the shared gRPC error table (``transport/grpc.py``).

ContainerdError and BlobNotFound live here until the lead moves them into
``exceptions.py``; both are EngineErrors, so callers that handle engine
failures handle node failures too. On top of the shared table:

- UNAVAILABLE for a locked ref -> ContainerdError: another writer holds it,
  the connection is fine (and callers wait on ``code == "UNAVAILABLE"``)
- NOT_FOUND for a content digest -> BlobNotFound
- anything else the table does not name -> ContainerdError with the code name
"""

from __future__ import annotations

import functools

import grpc

from airflow_provider_artiload.exceptions import ArtiloadError, EngineError
from airflow_provider_artiload.transport.grpc import status_code, status_details, translate_rpc_error


class ContainerdError(EngineError):
    """containerd refused or failed a call; ``code`` is the gRPC status name (``ALREADY_EXISTS``)."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class BlobNotFound(ContainerdError):
    """The content store has no blob with that digest."""


def translate(
    exc: grpc.RpcError,
    *,
    where: str,
    what: str,
    dial_error: BaseException | None = None,
    started: bool = False,
) -> ArtiloadError:
    """An RpcError from ``what`` as our error; ``started`` says whether data had moved already."""
    code = status_code(exc)
    details = status_details(exc)
    cls = BlobNotFound if code == grpc.StatusCode.NOT_FOUND and "content digest" in details else ContainerdError
    own = functools.partial(cls, code=code.name if code is not None else None)
    if code == grpc.StatusCode.UNAVAILABLE and is_lock(details):
        return own(f"containerd at {where}: {what} failed: {details}")
    return translate_rpc_error(
        exc, peer="containerd", where=where, what=what, fallback=own, dial_error=dial_error, started=started
    )


def is_lock(details: str) -> bool:
    """containerd answers UNAVAILABLE when another writer holds a ref: not a connection problem."""
    return "locked" in details


__all__ = ["BlobNotFound", "ContainerdError", "is_lock", "translate"]
