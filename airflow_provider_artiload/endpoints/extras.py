"""Connection extras, one parser per type: strict booleans, bounded seconds, lists, host keys, ciphers.

Extras are data: :data:`EXTRA_PARSERS` gives each known extra its parser,
:data:`KNOWN_EXTRAS` says which kinds use it; ``None`` and ``""`` mean unset
(Airflow's form saves every field); an unknown extra is ignored with a warning
naming the nearest known one. A bad value is an EndpointError naming the extra
and quoting the value (only the type of a secret).
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from airflow_provider_artiload.endpoints.model import SSHConfig
from airflow_provider_artiload.exceptions import EndpointError

log = logging.getLogger("airflow_provider_artiload.endpoints")  # one logger for the package, as before the split

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
# Extras read by the hooks themselves (hooks/engine.py, hooks/buildkit.py), and the coming containerd kind.
HOOK_EXTRAS: dict[str, tuple[str, ...]] = {
    "engine": ("timeout", "transfer_timeout", "platform"),
    "buildkit": ("engine_conn_id", "network", "registry_conn_ids", "context_roots", "secret_roots"),
    "containerd": ("namespace", "snapshotter", "platform", "timeout", "transfer_timeout", "pin"),
}
KNOWN_EXTRAS: dict[str, frozenset[str]] = {
    kind: frozenset(TLS_EXTRAS + SSH_EXTRAS + own) for kind, own in HOOK_EXTRAS.items()
}
# Never quoted in a message: only their type is shown.
SECRET_EXTRAS = frozenset({"private_key", "private_key_passphrase", "tls_client_key", "password"})
MAX_SECONDS = 86400.0  # a day: a larger timeout is a unit typo (ms for s), not a wish
# TLS extras that make no sense with ``tls: false`` (urls refuses the mix).
TLS_MATERIAL = ("tls_ca_cert", "tls_client_cert", "tls_client_key", "tls_hostname")
_KEY_TYPE = re.compile(r"(?:ssh|ecdsa|sk)-[A-Za-z0-9@.+-]+")
_CIPHER = re.compile(r"[A-Za-z0-9@._+-]+")


def parse_extras(extras: Mapping[str, Any] | None, *, kind: str) -> dict[str, Any]:
    """The set extras of a ``kind`` connection, each parsed by its type; unknown ones warned about and dropped."""
    if extras is not None and not isinstance(extras, Mapping):
        raise EndpointError(f"the extras must be a JSON object, got a {type(extras).__name__}")
    known = KNOWN_EXTRAS[kind]
    parsed: dict[str, Any] = {}
    for name, value in (extras or {}).items():
        if _unset(value):
            continue
        if name not in known:
            _warn_unknown(str(name), kind)
            continue
        parsed[name] = EXTRA_PARSERS[name](value, name)
    return parsed


def parse_bool(value: Any, *, name: str, default: bool) -> bool:
    """Strict boolean from an extra: a typo is an error, never a silent default."""
    if _unset(value):
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
    raise EndpointError(f"extra {name!r} must be true or false, got {_shown(name, value)}")


def parse_float(value: Any, *, name: str, default: float, maximum: float = MAX_SECONDS) -> float:
    """Seconds from an extra: finite, ``0 < t <= maximum`` (a day by default)."""
    if _unset(value):
        return default
    bounds = f"(expected 0 < t <= {maximum:g})"
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise EndpointError(f"extra {name!r} must be a number of seconds, got {value!r} {bounds}") from None
    if not math.isfinite(number):
        raise EndpointError(f"extra {name!r} must be a finite number of seconds, got {value!r} {bounds}")
    if number <= 0:
        raise EndpointError(f"extra {name!r} must be positive, got {value!r} {bounds}")
    if number > maximum:
        raise EndpointError(f"extra {name!r} must be at most {maximum:g} seconds, got {value!r}")
    return number


def parse_list(value: Any, *, name: str) -> list[str]:
    """A list of names: a JSON list or comma-separated text, or a list of strings."""
    if _unset(value):
        return []
    items = value
    if isinstance(value, str):
        text = value.strip()
        items = _json(text, name=name, want=list) if text.startswith("[") else text.split(",")
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise EndpointError(f"extra {name!r} must be a list of strings (JSON or comma-separated), got {value!r}")
    return [i.strip() for i in items if i.strip()]


def parse_host_key(value: Any, name: str = "host_key") -> str:
    """A pinned host key, normalised to ``type base64`` (see :func:`split_host_key`)."""
    key_type, blob = split_host_key(_text(value, name), name=name)
    return f"{key_type} {base64.b64encode(blob).decode()}"


def split_host_key(value: str, *, name: str = "host_key") -> tuple[str, bytes]:
    """(key type, key blob) from one public key line.

    Accepted: ``type base64 [comment]`` (a ``.pub`` file), ``host type base64
    [comment]`` (``ssh-keyscan`` output, a known_hosts line: the host part is
    ignored, the key is pinned to the endpoint's host) and a bare base64 blob.
    Blank and ``#`` lines are skipped; exactly one key must remain.
    """
    if "PRIVATE KEY" in value:
        raise EndpointError(f"extra {name!r} holds a private key; it takes the server's public key (ssh-keyscan HOST)")
    lines = [line.strip() for line in value.splitlines() if line.strip() and not line.strip().startswith("#")]
    if len(lines) != 1:
        raise EndpointError(f"extra {name!r} must be one public key line, got {len(lines)}: {_shown(name, value)}")
    fields = lines[0].split()
    if fields[0].startswith("@"):
        raise EndpointError(f"extra {name!r}: known_hosts markers such as {fields[0]} are not supported")
    for at in (0, 1):
        if len(fields) > at + 1 and _KEY_TYPE.fullmatch(fields[at]) and (blob := _b64(fields[at + 1])) is not None:
            return _checked_key(fields[at], blob, value, name)
    blob = _b64(fields[0]) if len(fields) == 1 else None
    embedded = _ssh_string(blob) if blob else None
    if blob is None or embedded is None:
        raise EndpointError(
            f"extra {name!r} is not a public key 'type base64 [comment]', e.g. 'ssh-ed25519 AAAAC3Nza...': "
            f"got {_shown(name, value)}"
        )
    return _checked_key(embedded, blob, value, name)


def _checked_key(key_type: str, blob: bytes, value: str, name: str) -> tuple[str, bytes]:
    """A key whose blob names its own type must name the stated one (a common copy-paste slip)."""
    embedded = _ssh_string(blob)
    if embedded is not None and embedded != key_type:
        raise EndpointError(f"extra {name!r} says {key_type} but the key is {embedded}: {_shown(name, value)}")
    return key_type, blob


def _parse_ciphers(value: Any, name: str) -> tuple[str, ...]:
    ciphers = parse_list(value, name=name)
    bad = [c for c in ciphers if not _CIPHER.fullmatch(c)]
    if bad or not ciphers:
        example = "'aes128-gcm@openssh.com,aes256-ctr'"
        raise EndpointError(f"extra {name!r} must name ciphers, e.g. {example}, got {value!r}")
    return tuple(ciphers)


def _parse_algorithms(value: Any, name: str) -> dict[str, list[str]]:
    """paramiko's ``disabled_algorithms``: ``{"pubkeys": ["rsa-sha2-512"], ...}``."""
    algorithms = _json(value.strip(), name=name, want=dict) if isinstance(value, str) else value
    if not isinstance(algorithms, Mapping) or not all(
        isinstance(k, str) and isinstance(v, (list, tuple)) and all(isinstance(a, str) for a in v)
        for k, v in algorithms.items()
    ):
        raise EndpointError(
            f"extra {name!r} must be a JSON object of lists, e.g. {{\"pubkeys\": [\"rsa-sha2-512\"]}}, got {value!r}"
        )
    return {k: list(v) for k, v in algorithms.items()}


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise EndpointError(f"extra {name!r} must be a string, got {_shown(name, value)}")
    return value


def _remote_path(value: Any, name: str) -> str:
    path = _text(value, name)
    if not path.startswith("/"):
        raise EndpointError(f"extra {name!r} must be absolute (a socket path on the remote host), got {path!r}")
    return path


def _flag(value: Any, name: str) -> bool:
    return parse_bool(value, name=name, default=False)


def _seconds(value: Any, name: str) -> float:
    return parse_float(value, name=name, default=MAX_SECONDS)


def _names(value: Any, name: str) -> list[str]:
    return parse_list(value, name=name)


_FLAGS = ("tls", "tls_verify", "no_host_key_check", "allow_host_key_change", "look_for_keys", "compress", "pin")
_TEXTS = TLS_MATERIAL + ("ssh_conn_id", "key_file", "private_key", "private_key_passphrase", "known_hosts")
_HOOK_TEXTS = ("engine_conn_id", "network", "namespace", "snapshotter", "platform")
EXTRA_PARSERS: dict[str, Callable[[Any, str], Any]] = {
    **dict.fromkeys(_FLAGS, _flag),
    **dict.fromkeys(("conn_timeout", "timeout", "transfer_timeout"), _seconds),
    **dict.fromkeys(("registry_conn_ids", "context_roots", "secret_roots"), _names),
    **dict.fromkeys(_TEXTS + _HOOK_TEXTS, _text),
    "socket_path": _remote_path,
    "host_key": parse_host_key,
    "ciphers": _parse_ciphers,
    "disabled_algorithms": _parse_algorithms,
}
"""Each known extra's parser: ``(value, name) -> parsed value``, raising EndpointError naming both."""


def parse_ssh_extras(extras: Mapping[str, Any], *, username: str | None = None) -> SSHConfig:
    """SSH settings from extras named as in apache-airflow-providers-ssh (raw or already parsed)."""
    x = {n: EXTRA_PARSERS[n](v, n) for n, v in extras.items() if n in SSH_EXTRAS and not _unset(v)}
    return SSHConfig(
        username=username or None,
        private_key=x.get("private_key"),
        private_key_passphrase=x.get("private_key_passphrase"),
        key_file=x.get("key_file"),
        host_key=x.get("host_key"),
        known_hosts=x.get("known_hosts"),
        no_host_key_check=x.get("no_host_key_check", False),
        allow_host_key_change=x.get("allow_host_key_change", False),
        look_for_keys=x.get("look_for_keys", True),
        conn_timeout=x.get("conn_timeout", 10.0),
        ciphers=x.get("ciphers"),
        disabled_algorithms=x.get("disabled_algorithms"),
        compress=x.get("compress", False),
    )


def _unset(value: Any) -> bool:
    """None and "" are what Airflow's form saves for an empty field."""
    return value is None or (isinstance(value, str) and value == "")


def _warn_unknown(name: str, kind: str) -> None:
    other = sorted(k for k, names in KNOWN_EXTRAS.items() if k != kind and name in names)
    if other:
        log.warning("extra %r is not used by %s connections (it is for %s); ignored", name, kind, " and ".join(other))
        return
    close = difflib.get_close_matches(name, sorted(KNOWN_EXTRAS[kind]), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(KNOWN_EXTRAS[kind]))}"
    log.warning("unknown extra %r is ignored by %s connections (%s)", name, kind, hint)


def _shown(name: str, value: Any) -> str:
    """A value for a message: quoted and cut short, or only its type for a secret."""
    if name in SECRET_EXTRAS:
        return f"a value of type {type(value).__name__} (not shown)"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _json(text: str, *, name: str, want: type) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        raise EndpointError(f"extra {name!r} is not valid JSON: {text!r}") from None
    if not isinstance(value, want):
        raise EndpointError(f"extra {name!r} must be a JSON {'list' if want is list else 'object'}, got {text!r}")
    return value


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True) or None
    except (binascii.Error, ValueError):
        return None


def _ssh_string(blob: bytes) -> str | None:
    """The leading SSH ``string`` of a key blob (its type), if the blob holds one."""
    size = int.from_bytes(blob[:4], "big") if len(blob) >= 4 else -1
    if size <= 0 or 4 + size > len(blob):
        return None
    try:
        text = blob[4 : 4 + size].decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if _KEY_TYPE.fullmatch(text) else None
