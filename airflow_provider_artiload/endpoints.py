"""One connection model for Docker Engines and BuildKit daemons; no I/O here.

An endpoint is a URL plus extras (the same names as the Airflow docker and ssh
providers use), validated up front so a typo fails at parse time with the bad
value quoted and a valid example shown:

- ``unix:///var/run/docker.sock``
- ``tcp://host:2376`` (TLS verified by default; ``tls: false`` opts out)
- ``ssh://user@host:22`` (+ remote socket as the URL path or ``socket_path``)
- ``docker://<engine endpoint>`` (BuildKit only): the BuildKit inside an engine
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlsplit

from airflow_provider_artiload.exceptions import EndpointError

Kind = Literal["engine", "buildkit"]

DEFAULT_SOCKETS: dict[str, str] = {
    "engine": "/var/run/docker.sock",
    "buildkit": "/run/buildkit/buildkitd.sock",
}
EXAMPLES: dict[str, str] = {
    "engine": "unix:///var/run/docker.sock, tcp://host:2376 or ssh://user@host:22",
    "buildkit": "unix:///run/buildkit/buildkitd.sock, tcp://host:1234, "
    "ssh://user@host:22 or docker://unix:///var/run/docker.sock",
}
TLS_EXTRAS = ("tls", "tls_verify", "tls_ca_cert", "tls_client_cert", "tls_client_key", "tls_hostname")
SSH_EXTRAS = (
    "ssh_conn_id",
    "key_file",
    "private_key",
    "private_key_passphrase",
    "host_key",
    "known_hosts",
    "no_host_key_check",
    "allow_host_key_change",
    "look_for_keys",
    "conn_timeout",
    "ciphers",
    "disabled_algorithms",
    "compress",
    "socket_path",
)


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
    """SSH settings, named as in apache-airflow-providers-ssh."""

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


def parse_endpoint(url: str, *, kind: Kind, extras: Mapping[str, Any] | None = None) -> Endpoint:
    """Parse ``url`` and ``extras`` into an :class:`Endpoint`, or raise EndpointError."""
    extras = dict(extras or {})
    url = (url or "").strip()
    if not url:
        raise EndpointError(f"empty {kind} endpoint; expected e.g. {EXAMPLES[kind]}")
    if url.startswith("docker://"):
        if kind != "buildkit":
            raise _bad(url, kind, "docker:// names the BuildKit inside an engine; an engine endpoint is unix://, tcp:// or ssh://")
        inner = url[len("docker://") :]
        engine = parse_endpoint(inner, kind="engine", extras=extras) if inner else None
        return Endpoint(scheme="docker", engine=engine)
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise _bad(url, kind, "missing scheme")
    if scheme == "unix":
        return _parse_unix(url, kind)
    if scheme == "tcp":
        return _parse_tcp(url, kind, extras)
    if scheme == "ssh":
        return _parse_ssh(url, kind, extras)
    raise _bad(url, kind, f"unknown scheme {scheme!r}")


def default_engine_url(environ: Mapping[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    """The engine the docker CLI would use: ``DOCKER_HOST`` and friends, else the local socket."""
    env = os.environ if environ is None else environ
    url = env.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKETS['engine']}"
    extras: dict[str, Any] = {}
    if url.startswith("tcp://"):
        verify = bool(env.get("DOCKER_TLS_VERIFY"))
        tls = verify or bool(env.get("DOCKER_TLS"))
        extras["tls"] = tls
        if tls:
            cert_path = env.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker")
            extras.update(
                tls_verify=verify,
                tls_ca_cert=os.path.join(cert_path, "ca.pem"),
                tls_client_cert=os.path.join(cert_path, "cert.pem"),
                tls_client_key=os.path.join(cert_path, "key.pem"),
            )
    return url, extras


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


def parse_bool(value: Any, *, name: str, default: bool) -> bool:
    """Strict boolean from an extra: a typo is an error, never a silent default."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise EndpointError(f"extra {name!r} must be true or false, got {value!r}")


def parse_float(value: Any, *, name: str, default: float) -> float:
    """Strict positive number from an extra."""
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise EndpointError(f"extra {name!r} must be a number of seconds, got {value!r}") from None
    if number <= 0:
        raise EndpointError(f"extra {name!r} must be positive, got {value!r}")
    return number


def _parse_unix(url: str, kind: Kind) -> Endpoint:
    path = url[len("unix://") :]
    if not path.startswith("/"):
        raise _bad(url, kind, "a unix socket path must be absolute")
    return Endpoint(scheme="unix", address=path)


def _parse_tcp(url: str, kind: Kind, extras: Mapping[str, Any]) -> Endpoint:
    parts = _split(url, kind)
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise _bad(url, kind, "a tcp endpoint is only host and port")
    tls = _parse_tls(extras)
    default_port = 2376 if tls else 2375
    return Endpoint(scheme="tcp", host=parts.hostname or "", port=_port(parts, url, kind) or default_port, tls=tls)


def _parse_ssh(url: str, kind: Kind, extras: Mapping[str, Any]) -> Endpoint:
    parts = _split(url, kind)
    if parts.password:
        raise _bad(url, kind, "put the SSH password in the connection's password field, not in the URL")
    socket_path = parts.path or str(extras.get("socket_path") or "") or DEFAULT_SOCKETS[kind]
    if not socket_path.startswith("/"):
        raise _bad(url, kind, f"remote socket path {socket_path!r} must be absolute")
    return Endpoint(
        scheme="ssh",
        address=socket_path,
        host=parts.hostname or "",
        port=_port(parts, url, kind) or 22,
        ssh=parse_ssh_extras(extras, username=parts.username),
    )


def parse_ssh_extras(extras: Mapping[str, Any], *, username: str | None = None) -> SSHConfig:
    """SSH settings from extras named as in apache-airflow-providers-ssh."""
    ciphers = extras.get("ciphers")
    if isinstance(ciphers, str):
        ciphers = _json_or(ciphers, ciphers.split(","), name="ciphers")
    disabled = extras.get("disabled_algorithms")
    if isinstance(disabled, str):
        disabled = _json_or(disabled, None, name="disabled_algorithms")
    if disabled is not None and not isinstance(disabled, Mapping):
        raise EndpointError(f"extra 'disabled_algorithms' must be a JSON object, got {disabled!r}")
    return SSHConfig(
        username=username or None,
        private_key=extras.get("private_key") or None,
        private_key_passphrase=extras.get("private_key_passphrase") or None,
        key_file=extras.get("key_file") or None,
        host_key=extras.get("host_key") or None,
        known_hosts=extras.get("known_hosts") or None,
        no_host_key_check=parse_bool(extras.get("no_host_key_check"), name="no_host_key_check", default=False),
        allow_host_key_change=parse_bool(
            extras.get("allow_host_key_change"), name="allow_host_key_change", default=False
        ),
        look_for_keys=parse_bool(extras.get("look_for_keys"), name="look_for_keys", default=True),
        conn_timeout=parse_float(extras.get("conn_timeout"), name="conn_timeout", default=10.0),
        ciphers=tuple(c.strip() for c in ciphers if c.strip()) if ciphers else None,
        disabled_algorithms=disabled,
        compress=parse_bool(extras.get("compress"), name="compress", default=False),
    )


def _parse_tls(extras: Mapping[str, Any]) -> TLSConfig | None:
    """TLS is on unless ``tls`` is explicitly false; verification likewise."""
    if not parse_bool(extras.get("tls"), name="tls", default=True):
        given = [name for name in TLS_EXTRAS[1:] if extras.get(name)]
        if given:
            raise EndpointError(f"extra 'tls' is false but TLS extras are set: {', '.join(given)}")
        return None
    return TLSConfig(
        verify=parse_bool(extras.get("tls_verify"), name="tls_verify", default=True),
        ca_cert=extras.get("tls_ca_cert") or None,
        client_cert=extras.get("tls_client_cert") or None,
        client_key=extras.get("tls_client_key") or None,
        server_hostname=extras.get("tls_hostname") or None,
    )


def _split(url: str, kind: Kind):
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise _bad(url, kind, "the port must be a number from 1 to 65535") from None
    if not parts.hostname:
        raise _bad(url, kind, "missing host")
    return parts


def _port(parts, url: str, kind: Kind) -> int | None:
    if parts.port == 0:
        raise _bad(url, kind, "the port must be a number from 1 to 65535")
    return parts.port


def _json_or(text: str, fallback: Any, *, name: str) -> Any:
    text = text.strip()
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            raise EndpointError(f"extra {name!r} is not valid JSON: {text!r}") from None
    if fallback is None:
        raise EndpointError(f"extra {name!r} must be JSON, got {text!r}")
    return fallback


def _host_port(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port else shown


def _bad(url: str, kind: Kind, why: str) -> EndpointError:
    return EndpointError(f"invalid {kind} endpoint {_redacted(url)!r}: {why}; expected e.g. {EXAMPLES[kind]}")


def _redacted(url: str) -> str:
    """The URL as a user typed it, but never with a password (error messages reach task logs)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return url.replace(f":{password}@", ":***@") if password else url
