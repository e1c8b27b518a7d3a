"""Streams to a remote unix socket through SSH, with nothing but sshd on the remote.

Each stream is an OpenSSH ``direct-streamlocal@openssh.com`` channel over one
shared, lazily opened paramiko session. paramiko has no helper for this
channel type, so :func:`open_streamlocal` builds the channel-open message
itself, mirroring ``paramiko.Transport.open_channel`` (checked on paramiko
3.4 to 5.1; ``tests/unit/test_ssh_streamlocal.py`` guards the internals it uses).
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import io
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import paramiko
from paramiko.common import cMSG_CHANNEL_OPEN

from airflow_provider_artiload.endpoints import Endpoint, SSHConfig, split_host_key
from airflow_provider_artiload.exceptions import ConnectError, HostKeyError, SSHAuthError
from airflow_provider_artiload.transport.base import ByteCounter, Stream

log = logging.getLogger(__name__)

PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")  # ~1.8x paramiko's ctr default
CHANNEL_WINDOW = 8 << 20  # a larger receive window keeps saves over SSH from stalling on round trips
KEEPALIVE_SECONDS = 30
CONNECT_ATTEMPTS = 5


class ChannelConnection:
    """A paramiko Channel as a RawConnection.

    paramiko reports a dead session as EOFError or SSHException, which are not
    OSErrors: they are turned into ConnectionResetError here, so the Stream
    names the endpoint like for any other broken connection.
    """

    def __init__(self, channel: paramiko.Channel) -> None:
        self._channel = channel

    def sendall(self, data: memoryview) -> None:
        with _lost_is_reset():
            self._channel.sendall(data)  # a memoryview keeps paramiko's per-packet re-slicing O(1)

    def recv_into(self, buffer: memoryview) -> int:
        with _lost_is_reset():
            data = self._channel.recv(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def settimeout(self, timeout: float | None) -> None:
        self._channel.settimeout(timeout)

    def shutdown_write(self) -> None:
        with _lost_is_reset():
            self._channel.shutdown_write()

    def abort(self) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(EOFError, OSError, paramiko.SSHException):
            self._channel.close()  # closing a channel of a dead session must not raise


@contextlib.contextmanager
def _lost_is_reset() -> Iterator[None]:
    try:
        yield
    except (EOFError, paramiko.SSHException) as exc:
        raise ConnectionResetError(errno.ECONNRESET, "the SSH connection was lost") from exc


class SSHDialer:
    """Opens streamlocal channels to ``endpoint.address`` over one SSH session."""

    def __init__(self, endpoint: Endpoint, *, counter: ByteCounter | None = None) -> None:
        if endpoint.scheme != "ssh" or endpoint.ssh is None:
            raise ValueError(f"SSHDialer cannot dial {endpoint.url}")
        self.endpoint = endpoint
        self.config: SSHConfig = endpoint.ssh
        self.counter = counter or ByteCounter()
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.endpoint.url

    def dial(self, timeout: float | None = None) -> Stream:
        transport = self._transport()
        channel = open_streamlocal(transport, self.endpoint.address, where=self.url, timeout=self.config.conn_timeout)
        stream = Stream(ChannelConnection(channel), name=self.url, counter=self.counter)
        stream.settimeout(timeout)
        return stream

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _transport(self) -> paramiko.Transport:
        """The shared session; reopened if the previous one died."""
        with self._lock:
            transport = self._client.get_transport() if self._client else None
            if transport is None or not transport.is_active():
                if self._client is not None:
                    self._client.close()
                self._client = self._connect_with_retries()
                transport = self._client.get_transport()
            assert transport is not None
            return transport

    def _connect_with_retries(self) -> paramiko.SSHClient:
        """Retry connections the server dropped before authentication.

        sshd drops unauthenticated connections beyond MaxStartups (10 by
        default): a backfill of many loads to one host meets that. Refused
        credentials or host keys are never retried.
        """
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                return self._connect()
            except ConnectError as exc:
                if isinstance(exc, (SSHAuthError, HostKeyError)) or not _dropped_early(exc.__cause__):
                    raise
                if attempt == CONNECT_ATTEMPTS - 1:
                    raise ConnectError(f"{exc} (the server kept dropping new connections: sshd MaxStartups?)") from exc
                time.sleep(0.2 * 2**attempt * (1 + random.random()))
        raise AssertionError("unreachable")

    def _connect(self) -> paramiko.SSHClient:
        cfg, host, port = self.config, self.endpoint.host, self.endpoint.port or 22
        client = paramiko.SSHClient()
        self._set_host_key_policy(client)
        username = cfg.username or getpass.getuser()
        try:
            client.connect(
                host,
                port=port,
                username=username,
                password=cfg.password,
                pkey=load_private_key(cfg.private_key, cfg.private_key_passphrase) if cfg.private_key else None,
                key_filename=os.path.expanduser(cfg.key_file) if cfg.key_file else None,
                passphrase=cfg.private_key_passphrase,
                timeout=cfg.conn_timeout,
                banner_timeout=cfg.conn_timeout,
                auth_timeout=cfg.conn_timeout,
                look_for_keys=cfg.look_for_keys,
                allow_agent=cfg.look_for_keys,
                compress=cfg.compress,
                disabled_algorithms=dict(cfg.disabled_algorithms) if cfg.disabled_algorithms else None,
                transport_factory=self._make_transport,
            )
        except HostKeyError:
            client.close()
            raise
        except Exception as exc:
            client.close()
            raise _translate_connect_error(exc, self.url, username) from exc
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(KEEPALIVE_SECONDS)
        return client

    def _make_transport(self, sock: Any, **kwargs: Any) -> paramiko.Transport:
        transport = paramiko.Transport(sock, **kwargs)
        options = transport.get_security_options()
        if self.config.ciphers:
            options.ciphers = self.config.ciphers
        else:
            available = options.ciphers
            options.ciphers = tuple(c for c in PREFERRED_CIPHERS if c in available) + tuple(
                c for c in available if c not in PREFERRED_CIPHERS
            )
        return transport

    def _set_host_key_policy(self, client: paramiko.SSHClient) -> None:
        cfg = self.config
        if cfg.no_host_key_check or cfg.allow_host_key_change:
            which = "no_host_key_check" if cfg.no_host_key_check else "allow_host_key_change"
            log.warning("%s: host key NOT verified (the connection sets %s)", self.url, which)
            client.set_missing_host_key_policy(paramiko.WarningPolicy())
            return
        if cfg.host_key:
            key = load_host_key(cfg.host_key, where=self.url)
            client.get_host_keys().add(_known_hosts_name(self.endpoint), key.get_name(), key)
        else:
            path = os.path.expanduser(cfg.known_hosts or "~/.ssh/known_hosts")
            if os.path.exists(path):
                client.load_host_keys(path)
            elif cfg.known_hosts:
                raise HostKeyError(f"{self.url}: known_hosts file {path} does not exist")
        client.set_missing_host_key_policy(_RejectUnknown(self.url))


def open_streamlocal(transport: paramiko.Transport, socket_path: str, *, where: str, timeout: float) -> paramiko.Channel:
    """Open a ``direct-streamlocal@openssh.com`` channel to ``socket_path`` on the server."""
    if not transport.is_active():
        raise ConnectError(f"{where}: the SSH session is closed")
    with transport.lock:
        window = transport._sanitize_window_size(CHANNEL_WINDOW)
        max_packet = transport._sanitize_packet_size(None)
        chanid = transport._next_channel()
        message = paramiko.Message()
        message.add_byte(cMSG_CHANNEL_OPEN)
        message.add_string("direct-streamlocal@openssh.com")
        message.add_int(chanid)
        message.add_int(window)
        message.add_int(max_packet)
        message.add_string(socket_path)
        message.add_string("")  # reserved: originator address
        message.add_int(0)  # reserved: originator port
        channel = paramiko.Channel(chanid)
        transport._channels.put(chanid, channel)
        event = transport.channel_events[chanid] = threading.Event()
        transport.channels_seen[chanid] = True
        channel._set_transport(transport)
        channel._set_window(window, max_packet)
    transport._send_user_message(message)
    deadline = time.monotonic() + timeout
    while not event.wait(0.05):
        if not transport.is_active():
            raise ConnectError(f"{where}: the SSH session closed while opening a channel to {socket_path}")
        if time.monotonic() > deadline:
            raise ConnectError(f"{where}: timed out after {timeout} s opening a channel to {socket_path}")
    opened = transport._channels.get(chanid)
    if opened is None:
        raise ConnectError(
            f"{where}: the SSH server could not connect to {socket_path}: the socket is missing, "
            "or the server forbids stream forwarding (sshd AllowStreamLocalForwarding)"
        )
    return opened


def load_private_key(text: str, passphrase: str | None) -> paramiko.PKey:
    """A private key from inline text (OpenSSH or PEM), whatever its type."""
    last: Exception | None = None
    for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return key_class.from_private_key(io.StringIO(text), password=passphrase)
        except paramiko.PasswordRequiredException:
            raise SSHAuthError("the private_key is encrypted and no private_key_passphrase is set") from None
        except (paramiko.SSHException, ValueError) as exc:
            last = exc
    raise SSHAuthError(f"the private_key cannot be read: {last} (wrong passphrase or not a private key?)")


def load_host_key(value: str, *, where: str) -> paramiko.PKey:
    """The paramiko key for a host_key extra: ``endpoints`` parses its text, paramiko makes the key."""
    key_type, blob = split_host_key(value)
    try:
        return paramiko.PKey.from_type_string(key_type, blob)
    except (paramiko.SSHException, UnicodeDecodeError, ValueError, TypeError, IndexError):
        raise HostKeyError(
            f"{where}: host_key extra is not a valid {key_type} public key: {value[:40]!r} "
            "(expected e.g. 'ssh-ed25519 AAAAC3...', as ssh-keyscan prints it)"
        ) from None


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    def __init__(self, where: str) -> None:
        self._where = where

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise HostKeyError(
            f"{self._where}: host key of {hostname} is unknown ({key.get_name()} {key.fingerprint}); "
            "add it to known_hosts or the connection's host_key extra, or opt out with no_host_key_check"
        )


def _dropped_early(cause: BaseException | None) -> bool:
    if isinstance(cause, (ConnectionResetError, EOFError)):
        return True
    return isinstance(cause, paramiko.SSHException) and "banner" in str(cause).lower()


def _known_hosts_name(endpoint: Endpoint) -> str:
    port = endpoint.port or 22
    return endpoint.host if port == 22 else f"[{endpoint.host}]:{port}"


def _translate_connect_error(exc: Exception, where: str, username: str) -> Exception:
    if isinstance(exc, paramiko.BadHostKeyException):
        return HostKeyError(
            f"{where}: host key CHANGED: the server offers {exc.key.get_name()} {exc.key.fingerprint}, "
            f"expected {exc.expected_key.fingerprint}; if the change is expected, update known_hosts or host_key"
        )
    if isinstance(exc, paramiko.PasswordRequiredException):
        return SSHAuthError(f"{where}: the private key is encrypted and no private_key_passphrase is set")
    if isinstance(exc, paramiko.AuthenticationException):
        return SSHAuthError(f"{where}: the SSH server refused authentication as {username!r} ({exc})")
    if isinstance(exc, SSHAuthError):
        return SSHAuthError(f"{where}: {exc}")
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return ConnectError(f"cannot reach {where}: connection refused")
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return ConnectError(f"cannot reach {where}: timed out")
    if isinstance(exc, socket.gaierror):
        return ConnectError(f"cannot reach {where}: cannot resolve host ({exc.strerror})")
    if isinstance(exc, paramiko.SSHException) and "encrypted" in str(exc).lower():
        return SSHAuthError(f"{where}: the private key is encrypted and no private_key_passphrase is set")
    return ConnectError(f"cannot reach {where}: {exc or type(exc).__name__}")
