"""Unix-socket and TCP (+TLS) streams."""

from __future__ import annotations

import functools
import os
import socket
import ssl
import tempfile

from airflow_provider_artiload.endpoints import Endpoint, TLSConfig
from airflow_provider_artiload.exceptions import ConnectError, TLSError
from airflow_provider_artiload.transport.base import ByteCounter, Stream


class SocketConnection:
    """A plain or TLS socket as a RawConnection."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def sendall(self, data: memoryview) -> None:
        self._sock.sendall(data)

    def recv_into(self, buffer: memoryview) -> int:
        return self._sock.recv_into(buffer)

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def shutdown_write(self) -> None:
        if isinstance(self._sock, ssl.SSLSocket):
            return  # TLS has no half-close; the peer sees the end at close()
        self._sock.shutdown(socket.SHUT_WR)

    def abort(self) -> None:
        self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._sock.close()


class SocketDialer:
    """Dials ``unix://`` and ``tcp://`` endpoints; TLS when the endpoint says so."""

    def __init__(
        self, endpoint: Endpoint, *, counter: ByteCounter | None = None, alpn: tuple[str, ...] = ()
    ) -> None:
        if endpoint.scheme not in ("unix", "tcp"):
            raise ValueError(f"SocketDialer cannot dial {endpoint.url}")
        self.endpoint = endpoint
        self.counter = counter or ByteCounter()
        self.alpn = alpn  # ("h2",) for gRPC over TLS: Go's gRPC servers require it

    @property
    def url(self) -> str:
        return self.endpoint.url

    def dial(self, timeout: float | None = None) -> Stream:
        sock = self._connect_unix(timeout) if self.endpoint.scheme == "unix" else self._connect_tcp(timeout)
        stream = Stream(SocketConnection(sock), name=self.url, counter=self.counter)
        stream.settimeout(timeout)
        return stream

    def close(self) -> None:
        """Nothing is shared between unix/tcp streams."""

    def _connect_unix(self, timeout: float | None) -> socket.socket:
        path = self.endpoint.address
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except FileNotFoundError:
            sock.close()
            raise ConnectError(f"cannot reach {self.url}: socket {path} does not exist (is the daemon running?)") from None
        except PermissionError:
            sock.close()
            raise ConnectError(
                f"cannot reach {self.url}: permission denied on {path} (run as a user allowed to use it)"
            ) from None
        except ConnectionRefusedError:
            sock.close()
            raise ConnectError(f"cannot reach {self.url}: connection refused (stale socket, daemon not running?)") from None
        except OSError as exc:
            sock.close()
            raise ConnectError(f"cannot reach {self.url}: {exc.strerror or exc}") from exc
        return sock

    def _connect_tcp(self, timeout: float | None) -> socket.socket:
        host, port = self.endpoint.host, self.endpoint.port
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except socket.gaierror as exc:
            raise ConnectError(f"cannot reach {self.url}: cannot resolve host {host!r}: {exc.strerror}") from exc
        except (TimeoutError, socket.timeout) as exc:
            raise ConnectError(f"cannot reach {self.url}: connect timed out after {timeout} s") from exc
        except ConnectionRefusedError:
            raise ConnectError(f"cannot reach {self.url}: connection refused (wrong port, or daemon not listening)") from None
        except OSError as exc:
            raise ConnectError(f"cannot reach {self.url}: {exc.strerror or exc}") from exc
        if self.endpoint.tls is None:
            return sock
        try:
            return self._tls_context.wrap_socket(sock, server_hostname=self.endpoint.tls.server_hostname or host)
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            raise TLSError(f"TLS verification failed for {self.url}: {exc.verify_message or exc.reason}") from exc
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise TLSError(f"TLS handshake with {self.url} failed: {getattr(exc, 'reason', None) or exc}") from exc

    @functools.cached_property
    def _tls_context(self) -> ssl.SSLContext:
        assert self.endpoint.tls is not None
        context = tls_context(self.endpoint.tls, where=self.url)
        if self.alpn:
            context.set_alpn_protocols(list(self.alpn))
        return context


def tls_context(tls: TLSConfig, *, where: str) -> ssl.SSLContext:
    """An SSLContext from a TLSConfig whose fields hold paths or inline PEM."""
    try:
        if tls.ca_cert and _is_pem(tls.ca_cert):
            context = ssl.create_default_context(cadata=tls.ca_cert)
        else:
            context = ssl.create_default_context(cafile=tls.ca_cert)
        if not tls.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if tls.client_cert or tls.client_key:
            if not (tls.client_cert and tls.client_key):
                raise TLSError(f"{where}: tls_client_cert and tls_client_key must be given together")
            with _as_file(tls.client_cert) as cert, _as_file(tls.client_key) as key:
                context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise TLSError(f"{where}: cannot load TLS certificates: {getattr(exc, 'strerror', None) or exc}") from exc
    return context


def _is_pem(value: str) -> bool:
    return value.lstrip().startswith("-----BEGIN")


class _as_file:
    """A path for ``load_cert_chain``: the value itself, or inline PEM in an owner-only temp file removed at once."""

    def __init__(self, value: str) -> None:
        self._value = value
        self._temp: str | None = None

    def __enter__(self) -> str:
        if not _is_pem(self._value):
            return self._value
        fd, self._temp = tempfile.mkstemp(prefix="artiload-tls-", suffix=".pem")
        with os.fdopen(fd, "w") as handle:
            handle.write(self._value)
        return self._temp

    def __exit__(self, *exc_info: object) -> None:
        if self._temp:
            os.unlink(self._temp)
