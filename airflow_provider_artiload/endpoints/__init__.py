"""One connection model for Docker Engines, BuildKit daemons and containerd nodes; no I/O here.

An endpoint is a URL plus extras (the same names as the Airflow docker and ssh
providers use), validated up front so a typo fails at parse time with the bad
value quoted and a valid example shown:

- ``unix:///var/run/docker.sock``
- ``tcp://host:2376`` (TLS verified by default; ``tls: false`` opts out)
- ``ssh://user@host:22`` (+ remote socket as the URL path or ``socket_path``)
- ``docker://<engine endpoint>`` (BuildKit only): the BuildKit inside an engine

Three modules, imported in this order: :mod:`.model` (what a parsed endpoint
is), :mod:`.extras` (one parser per extra, host keys included) and
:mod:`.urls` (the URL schemes, and redaction of secrets in messages). This
file is the public surface; import from here.
"""

from __future__ import annotations

from airflow_provider_artiload.endpoints.extras import (
    EXTRA_PARSERS,
    HOOK_EXTRAS,
    KNOWN_EXTRAS,
    MAX_SECONDS,
    SECRET_EXTRAS,
    SSH_EXTRAS,
    TLS_EXTRAS,
    parse_bool,
    parse_extras,
    parse_float,
    parse_host_key,
    parse_list,
    parse_ssh_extras,
    split_host_key,
)
from airflow_provider_artiload.endpoints.model import (
    DEFAULT_SOCKETS,
    EXAMPLES,
    Endpoint,
    Kind,
    SSHConfig,
    TLSConfig,
    with_credentials,
)
from airflow_provider_artiload.endpoints.urls import default_engine_url, parse_endpoint, redact

__all__ = [
    "DEFAULT_SOCKETS",
    "EXAMPLES",
    "EXTRA_PARSERS",
    "HOOK_EXTRAS",
    "KNOWN_EXTRAS",
    "MAX_SECONDS",
    "SECRET_EXTRAS",
    "SSH_EXTRAS",
    "TLS_EXTRAS",
    "Endpoint",
    "Kind",
    "SSHConfig",
    "TLSConfig",
    "default_engine_url",
    "parse_bool",
    "parse_endpoint",
    "parse_extras",
    "parse_float",
    "parse_host_key",
    "parse_list",
    "parse_ssh_extras",
    "redact",
    "split_host_key",
    "with_credentials",
]
