"""Endpoint URLs: ``unix://``, ``tcp://``, ``ssh://`` and ``docker://``, parsed and checked; no I/O.

Every error raised while parsing leaves :func:`parse_endpoint` through
:func:`redact`, so no message (whatever path raised it) repeats a
``user:secret@``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import SplitResult, urlsplit

from airflow_provider_artiload.endpoints.extras import TLS_MATERIAL, parse_extras, parse_ssh_extras
from airflow_provider_artiload.endpoints.model import DEFAULT_SOCKETS, EXAMPLES, Endpoint, Kind, TLSConfig
from airflow_provider_artiload.exceptions import EndpointError

# "scheme://user:secret@", also mistyped ("ssh:/u:pw@", "tcp:u:pw@", "u:pw@"); the secret runs to the last "@".
_USERINFO = re.compile(r"((?:[A-Za-z][A-Za-z0-9+.-]*:/+)*[^\s:/@'\"]*):(?!//)\S*@")


def redact(text: str) -> str:
    """``text`` with every ``user:secret@`` turned into ``user:***@``: messages reach task logs.

    Deliberately loose: it also catches mistyped schemes (``ssh:/u:pw@h``,
    ``tcp:u:pw@h``) and bare ``u:pw@h``, at the price of sometimes hiding a
    user name too. A secret is taken to end at whitespace, which is why URLs
    are quoted by :func:`_quote` (whitespace escaped).
    """
    return _USERINFO.sub(r"\1:***@", text) if "@" in text else text


def parse_endpoint(url: str, *, kind: Kind, extras: Mapping[str, Any] | None = None) -> Endpoint:
    """Parse ``url`` and ``extras`` into an :class:`Endpoint`, or raise EndpointError (redacted)."""
    try:
        return _parse(url, kind, parse_extras(extras, kind=kind))
    except EndpointError as exc:
        error = EndpointError(redact(str(exc)))
    except (ValueError, TypeError, UnicodeError) as exc:  # a parser we call let a foreign error through
        error = EndpointError(redact(f"invalid {kind} endpoint {_quote(str(url))}: {exc}"))
    raise error  # outside the except block: the unredacted original is not kept as __context__


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


def _parse(url: str | None, kind: Kind, extras: dict[str, Any]) -> Endpoint:
    url = "" if url is None else url
    if not isinstance(url, str):
        raise EndpointError(f"the {kind} endpoint must be a URL string, got a {type(url).__name__}")
    url = url.strip()
    if not url:
        raise EndpointError(f"empty {kind} endpoint; expected e.g. {EXAMPLES[kind]}")
    bad_at = next((i for i, c in enumerate(url) if c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F), None)
    if bad_at is not None:
        raise _bad(url, kind, f"a space or control character at position {bad_at}")
    if url.startswith("docker://"):
        if kind != "buildkit":
            raise _bad(url, kind, "docker:// names the BuildKit inside an engine; an engine endpoint is unix://, tcp:// or ssh://")
        inner = url[len("docker://") :]
        return Endpoint(scheme="docker", engine=_parse(inner, "engine", extras) if inner else None)
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


def _parse_unix(url: str, kind: Kind) -> Endpoint:
    path = url[len("unix://") :]
    if not path.startswith("/"):
        raise _bad(url, kind, "a unix socket path must be absolute")
    return Endpoint(scheme="unix", address=path)


def _parse_tcp(url: str, kind: Kind, extras: Mapping[str, Any]) -> Endpoint:
    parts, host, port = _split(url, kind)
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise _bad(url, kind, "a tcp endpoint is only host and port")
    tls = _parse_tls(extras)
    default_port = 2376 if tls else 2375
    return Endpoint(scheme="tcp", host=host, port=port or default_port, tls=tls)


def _parse_ssh(url: str, kind: Kind, extras: Mapping[str, Any]) -> Endpoint:
    parts, host, port = _split(url, kind)
    if parts.password is not None:
        raise _bad(url, kind, "put the SSH password in the connection's password field, not in the URL")
    if parts.query or parts.fragment:
        raise _bad(url, kind, "an ssh endpoint has no ?query or #fragment; the remote socket is the URL path")
    return Endpoint(
        scheme="ssh",
        address=parts.path or extras.get("socket_path") or DEFAULT_SOCKETS[kind],
        host=host,
        port=port or 22,
        ssh=parse_ssh_extras(extras, username=parts.username),
    )


def _parse_tls(extras: Mapping[str, Any]) -> TLSConfig | None:
    """TLS is on unless ``tls`` is explicitly false; verification likewise."""
    if not extras.get("tls", True):
        given = [name for name in TLS_MATERIAL if name in extras]
        if given:
            raise EndpointError(f"extra 'tls' is false but TLS extras are set: {', '.join(given)}")
        return None
    return TLSConfig(
        verify=extras.get("tls_verify", True),
        ca_cert=extras.get("tls_ca_cert"),
        client_cert=extras.get("tls_client_cert"),
        client_key=extras.get("tls_client_key"),
        server_hostname=extras.get("tls_hostname"),
    )


def _split(url: str, kind: Kind) -> tuple[SplitResult, str, int | None]:
    """urlsplit, with its ValueErrors (bad brackets, bad port) turned into our message."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        port_error = "port" in str(exc).lower()
        why = "the port must be a number from 1 to 65535" if port_error else f"malformed host ({exc})"
        raise _bad(url, kind, why) from None
    if not host:
        raise _bad(url, kind, "missing host")
    if port == 0:
        raise _bad(url, kind, "the port must be a number from 1 to 65535")
    return parts, host, port


def _quote(url: str) -> str:
    """repr with whitespace escaped, so :func:`redact` sees a secret whole."""
    return repr(url).replace(" ", "\\x20")


def _bad(url: str, kind: Kind, why: str) -> EndpointError:
    return EndpointError(f"invalid {kind} endpoint {_quote(url)}: {why}; expected e.g. {EXAMPLES[kind]}")
