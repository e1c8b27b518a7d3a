"""The one error tree of artiload.

Every error names the endpoint (or path) and the cause, so a task log read on
its own says what to fix. Foreign errors (OSError, paramiko, ssl, grpc) are
translated where they cross into our code, with ``raise ... from exc``.

ArtiloadError (a plain Exception: the core imports and runs without Airflow)
├── EndpointError          bad URL or connection extras; raised before any I/O
├── ConnectError           cannot reach the endpoint (missing socket, refused, denied)
│   ├── SSHAuthError       the SSH server refused our credentials
│   ├── HostKeyError       the SSH host key is unknown or has changed
│   └── TLSError           TLS handshake or certificate verification failed
├── TransferError          a stream broke or stalled mid-transfer
│   └── TransferTimeout    no progress for longer than the timeout
├── EngineError            the Docker Engine answered with an error
│   └── ImageNotFound
├── ArchiveError           not a complete, well-formed docker-archive
│   └── DigestMismatch     bytes differ from what the artifact promised
├── DestinationError       the output path is not writable or the disk is full
├── RetentionError         retention or rollback cannot do what was asked (no earlier version)
└── BuildError             BuildKit refused or failed the build
"""

from __future__ import annotations


class ArtiloadError(Exception):
    """Base class of every error artiload raises.

    Not an ``AirflowException``: the transports, clients, formats and transfer
    run in a plain venv; Airflow fails a task on any exception alike.
    """


class EndpointError(ArtiloadError, ValueError):
    """An endpoint URL or connection extra is invalid."""


class ConnectError(ArtiloadError):
    """The endpoint could not be reached."""


class SSHAuthError(ConnectError):
    """The SSH server refused the credentials."""


class HostKeyError(ConnectError):
    """The SSH server's host key is unknown or differs from the expected one."""


class TLSError(ConnectError):
    """TLS handshake or certificate verification failed."""


class TransferError(ArtiloadError):
    """A byte stream broke in the middle of a transfer."""


class TransferTimeout(TransferError):
    """The peer made no progress for longer than the configured timeout."""


class EngineError(ArtiloadError):
    """The Docker Engine answered with an error (HTTP status or in-band ``error``)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ImageNotFound(EngineError):
    """The engine has no image by that reference."""


class ArchiveError(ArtiloadError):
    """The tarball is empty, truncated or not a docker-archive."""


class DigestMismatch(ArchiveError):
    """The bytes' sha256 differs from the expected digest."""


class DestinationError(ArtiloadError):
    """The output location is not writable or has no room."""


class RetentionError(ArtiloadError):
    """Retention or rollback cannot do what was asked (e.g. no earlier version to roll back to)."""


class BuildError(ArtiloadError):
    """BuildKit refused or failed the build."""
