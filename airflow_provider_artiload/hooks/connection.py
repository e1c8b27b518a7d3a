"""Airflow connection -> Endpoint, in one place for both connection types.

The ``host`` field holds the endpoint URL (``unix:///…``, ``tcp://…``,
``ssh://…``, ``docker://…``); ``login``/``password``/``port`` fill in what the
URL leaves out; extras carry TLS and SSH settings under the names of the
Airflow docker and ssh providers. ``ssh_conn_id`` reuses an Airflow ``ssh``
connection for host, user and keys.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

from airflow_provider_artiload.compat import AirflowNotFoundException
from airflow_provider_artiload.endpoints import (
    SSH_EXTRAS,
    Endpoint,
    Kind,
    default_engine_url,
    parse_endpoint,
    redact,
    with_credentials,
)
from airflow_provider_artiload.exceptions import EndpointError
from airflow_provider_artiload.hooks.secrets import mask_connection_secrets

GetConnection = Callable[[str], Any]


def endpoint_from_connection(conn: Any, *, kind: Kind, get_connection: GetConnection) -> Endpoint:
    """Build the endpoint a connection describes; every error names the connection."""
    try:
        return _endpoint(conn, kind=kind, get_connection=get_connection)
    except EndpointError as exc:
        error = EndpointError(redact(f"connection {conn.conn_id!r}: {exc}"))
    raise error  # outside the except block: the unredacted original is not kept as __context__


def optional_connection(get_connection: GetConnection, conn_id: str, default_conn_name: str) -> Any | None:
    """The connection; None when it is the default one and is not configured (the CLI's defaults apply)."""
    try:
        return get_connection(conn_id)
    except AirflowNotFoundException:
        if conn_id == default_conn_name:
            return None
        raise


def default_endpoint(kind: Kind) -> Endpoint:
    """No connection configured: the docker CLI's defaults (``DOCKER_HOST``...)."""
    url, extras = default_engine_url()
    if kind == "buildkit":
        url = "docker://" + url
    return parse_endpoint(url, kind=kind, extras=extras)


class ConnectionBacked:
    """What every artiload hook shares: its connection, named by ``conn_name_attr``, and that connection's set extras.

    Mixed in before Airflow's ``BaseHook``, which gives ``get_connection``.
    """

    conn_name_attr: str
    default_conn_name: str
    get_connection: GetConnection

    @cached_property
    def _connection(self) -> Any | None:
        return optional_connection(self.get_connection, getattr(self, self.conn_name_attr), self.default_conn_name)

    @cached_property
    def _extras(self) -> dict[str, Any]:
        if not self._connection:
            return {}
        extras = set_extras(self._connection)
        mask_connection_secrets(extras, self._connection.password)  # tls_client_key has no name Airflow hides
        return extras


def set_extras(conn: Any) -> dict[str, Any]:
    """The extras that are set: the UI's form saves every field, untouched ones as null (or "")."""
    return {k: v for k, v in (conn.extra_dejson or {}).items() if v is not None and v != ""}


def _endpoint(conn: Any, *, kind: Kind, get_connection: GetConnection) -> Endpoint:
    extras = set_extras(conn)
    url = _url(conn.host or "", conn.port, kind)
    login, password = conn.login, conn.password
    ssh_conn_id = extras.get("ssh_conn_id")
    if ssh_conn_id:
        ssh_conn = get_connection(ssh_conn_id)
        url, extras = _merge_ssh_connection(url, extras, ssh_conn)
        login, password = ssh_conn.login, password or ssh_conn.password
    elif not url:
        if kind == "buildkit" and extras.get("engine_conn_id"):
            url = "docker://"
        else:
            raise EndpointError(f"the host field is empty; set the endpoint URL there, e.g. {_example(kind)}")
    mask_connection_secrets(extras, password)  # an ssh connection's keys too, before any message can carry them
    endpoint = parse_endpoint(url, kind=kind, extras=extras)
    return with_credentials(endpoint, username=login, password=password)


def _url(host: str, port: int | None, kind: Kind) -> str:
    """The endpoint URL from the host field, adding the port field where the URL has none."""
    host = host.strip()
    if not host:
        return ""
    if host.startswith("/"):
        return f"unix://{host}"
    if "://" not in host:
        return f"tcp://{host}:{port}" if port else f"tcp://{host}"
    scheme, _, rest = host.partition("://")
    if port and scheme in ("tcp", "ssh") and not _has_port(rest):
        authority, slash, tail = rest.partition("/")
        return f"{scheme}://{authority}:{port}{slash}{tail}"
    return host


def _merge_ssh_connection(url: str, extras: dict[str, Any], ssh_conn: Any) -> tuple[str, dict[str, Any]]:
    """Host, user and keys from an Airflow ``ssh`` connection; our own extras win."""
    prefix = ""
    if url.startswith("docker://"):
        prefix, url = "docker://", url[len("docker://") :]
    if url and not url.startswith("ssh://"):
        raise EndpointError(f"ssh_conn_id is set but the host field is {url!r}; leave it empty or use ssh://")
    path = url[len("ssh://") :].partition("/")[2] if url else ""
    user = f"{ssh_conn.login}@" if ssh_conn.login else ""
    port = f":{ssh_conn.port}" if ssh_conn.port else ""
    merged = {k: v for k, v in set_extras(ssh_conn).items() if k in SSH_EXTRAS}
    merged.update({k: v for k, v in extras.items() if k != "ssh_conn_id"})  # only set ones: null never overrides
    merged_url = f"{prefix}ssh://{user}{ssh_conn.host}{port}" + (f"/{path}" if path else "")
    return merged_url, merged


def _has_port(authority_and_path: str) -> bool:
    authority = authority_and_path.partition("/")[0].rpartition("@")[2]
    return authority.rpartition("]")[2].count(":") > 0 if authority.startswith("[") else ":" in authority


def _example(kind: Kind) -> str:
    return "unix:///var/run/docker.sock" if kind == "engine" else "docker://unix:///var/run/docker.sock"
