"""Secrets: serve ``RUN --mount=type=secret,id=X`` values to the daemon.

Values are bytes held in memory for the build only. They are never logged:
an unknown id is answered NOT_FOUND (the daemon then leaves a non-required
secret absent), naming the id, never a value. File secrets are read by
:func:`resolve_secret_file`, which only reads regular files, of at most
BuildKit's own size limit, from the allowed directories.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence

import grpc

from airflow_provider_artiload.buildkit._proto import secrets_pb2, secrets_pb2_grpc
from airflow_provider_artiload.exceptions import BuildError

MAX_SECRET_SIZE = 500 * 1024  # BuildKit's limit (secretsprovider.MaxSecretSize, "500KB"): larger is refused there too
_FILE_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}

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


def resolve_secret_file(
    secret_id: str, path: str, roots: Sequence[str], *, max_size: int = MAX_SECRET_SIZE
) -> bytes:
    """The content of a file secret, if it is a regular file of at most ``max_size`` bytes in ``roots``.

    The check is on the real path (symlinks resolved), done again on the file
    actually opened, so a link swapped in between cannot escape. The file is
    opened non-blocking and ``fstat``-ed before any read: a FIFO would block
    the worker forever, a device never ends. Empty ``roots`` allow any place.
    Errors name the secret id and the path, never the content.
    """
    allowed = [os.path.realpath(root) for root in ([roots] if isinstance(roots, str) else roots)]
    real = os.path.realpath(path)
    _check_within(secret_id, path, real, allowed)
    try:
        _check_regular(secret_id, path, os.stat(real), max_size)  # devices are refused before any open()
        with _open_nonblocking(real) as fd:
            _check_within(secret_id, path, _opened_path(fd, real), allowed)
            _check_regular(secret_id, path, os.fstat(fd), max_size)
            data = _read_at_most(fd, max_size + 1)
    except OSError as exc:
        raise BuildError(f"secret {secret_id!r}: cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > max_size:
        raise _too_big(secret_id, path, max_size)  # it grew after fstat
    return data


def _check_within(secret_id: str, path: str, real: str, allowed: Sequence[str]) -> None:
    if allowed and not any(real == root or real.startswith(root.rstrip("/") + "/") for root in allowed):
        shown = path if real == path else f"{path} (really {real})"
        raise BuildError(
            f"secret {secret_id!r}: {shown} is outside the allowed secret directories: {', '.join(allowed)}"
        )


def _check_regular(secret_id: str, path: str, info: os.stat_result, max_size: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = _FILE_KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
        raise BuildError(f"secret {secret_id!r}: {path} is {kind}; a file secret must be a regular file")
    if info.st_size > max_size:
        raise _too_big(secret_id, path, max_size)


def _too_big(secret_id: str, path: str, max_size: int) -> BuildError:
    return BuildError(f"secret {secret_id!r}: {path} is larger than {max_size} bytes (BuildKit's secret limit)")


@contextlib.contextmanager
def _open_nonblocking(real: str) -> Iterator[int]:
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(real, flags)
    try:
        yield fd
    finally:
        os.close(fd)


def _opened_path(fd: int, fallback: str) -> str:
    """Where the open file really is (Linux ``/proc``); elsewhere the path checked before opening."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return fallback


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, min(65536, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
