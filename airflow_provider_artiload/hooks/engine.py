"""DockerEngineHook: an Airflow connection to a Docker Engine, and streaming save/load."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, Union

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.utils.net import get_hostname

from airflow_provider_artiload import transfer
from airflow_provider_artiload.artifacts import DockerArchive, LoadOutcome
from airflow_provider_artiload.endpoints import Endpoint, parse_float
from airflow_provider_artiload.engine.client import EngineClient
from airflow_provider_artiload.exceptions import ArtiloadError
from airflow_provider_artiload.hooks.connection import ConnectionBacked, default_endpoint, endpoint_from_connection
from airflow_provider_artiload.hooks.paths import as_target
from airflow_provider_artiload.transfer.sources import EngineSource, FileSource
from airflow_provider_artiload.transport import open_dialer

if TYPE_CHECKING:
    from airflow_provider_artiload.hooks.containerd import ContainerdHook


class DockerEngineHook(ConnectionBacked, BaseHook):
    """A Docker Engine reached over a unix socket, TCP+TLS or SSH.

    Nothing connects until a method needs the engine. Without a connection
    named ``docker_engine_default`` the docker CLI's defaults apply
    (``DOCKER_HOST``, ``DOCKER_TLS_VERIFY``, ``DOCKER_CERT_PATH``, then
    ``unix:///var/run/docker.sock``).

    :param engine_conn_id: the ``docker_engine`` connection.
    :param timeout: seconds for API calls (extra ``timeout``, default 60).
    :param transfer_timeout: seconds without progress before a save or load
        is abandoned (extra ``transfer_timeout``, default 300).
    """

    conn_name_attr = "engine_conn_id"
    default_conn_name = "docker_engine_default"
    conn_type = "docker_engine"
    hook_name = "Docker Engine (artiload)"

    def __init__(
        self,
        engine_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        transfer_timeout: float | None = None,
    ) -> None:
        super().__init__()
        self.engine_conn_id = engine_conn_id
        self._timeout = timeout
        self._transfer_timeout = transfer_timeout

    @cached_property
    def endpoint(self) -> Endpoint:
        if self._connection is None:
            return default_endpoint("engine")
        return endpoint_from_connection(self._connection, kind="engine", get_connection=self.get_connection)

    @cached_property
    def client(self) -> EngineClient:
        extras = self._extras
        return EngineClient(
            open_dialer(self.endpoint),
            timeout=self._timeout or parse_float(extras.get("timeout"), name="timeout", default=60.0),
            transfer_timeout=self._transfer_timeout
            or parse_float(extras.get("transfer_timeout"), name="transfer_timeout", default=300.0),
        )

    def test_connection(self) -> tuple[bool, str]:
        try:
            version = self.client.version()
        except ArtiloadError as exc:
            return False, str(exc)
        return True, f"Docker Engine {version.get('Version')} (API {version.get('ApiVersion')}) at {self.endpoint}"

    def save_image(self, image: str, path: str | Any) -> DockerArchive:
        """Stream ``image`` into a docker-archive at ``path`` (local or an object-storage URI); complete or absent."""
        artifact = transfer.save_image(self.client, image, as_target(path), self.log)
        return dataclasses.replace(artifact, hostname=get_hostname())

    def load_archive(
        self, source: DockerArchive | str, *, tags: Sequence[str] = (), skip_existing: bool = True, delta: bool = True
    ) -> LoadOutcome:
        """Stream a docker-archive into this engine (see :func:`load_into` for several engines)."""
        return load_into([self], source, transfer.LoadOptions(tuple(tags), skip_existing, delta), self.log)[0]

    def abort(self) -> None:
        """Cancel every transfer in flight (``on_kill``)."""
        if "client" in self.__dict__:
            self.client.abort()

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()


TargetHook = Union[DockerEngineHook, "ContainerdHook"]


def engine_hooks(engine_conn_id: str | Sequence[str]) -> list[TargetHook]:
    """One hook per target connection id (a single id or a list): engines, or containerd nodes by conn type."""
    from airflow_provider_artiload.hooks.containerd import ContainerdHook

    ids = [engine_conn_id] if isinstance(engine_conn_id, str) else list(engine_conn_id)
    if not ids:
        raise ArtiloadError("engine_conn_id is an empty list")
    return [ContainerdHook(i) if _conn_type(i) == ContainerdHook.conn_type else DockerEngineHook(i) for i in ids]


def _conn_type(conn_id: str) -> str | None:
    try:
        return BaseHook.get_connection(conn_id).conn_type
    except AirflowNotFoundException:
        return None  # the default engine (the docker CLI's defaults), or a missing one that fails by name later


def targets_of(hooks: Sequence[TargetHook]) -> list[Any]:
    """What transfer.load streams to: an engine's client, or a node's loader."""
    return [getattr(hook, "loader", None) or hook.client for hook in hooks]


def load_into(
    hooks: Sequence[TargetHook], source: DockerArchive | str | Any, options: transfer.LoadOptions, log: Any
) -> list[LoadOutcome]:
    """Load a tarball (artifact, path or ObjectStoragePath) into the engines and nodes of ``hooks``, reading it once per batch."""
    artifact = source if isinstance(source, DockerArchive) else None
    file_source = FileSource(
        as_target(artifact.path if artifact else source), artifact, platform=options.platform, here=get_hostname()
    )
    return transfer.load(file_source, targets_of(hooks), options, log)


def copy_between(
    source: TargetHook, image: str, targets: Sequence[TargetHook], options: transfer.LoadOptions, log: Any
) -> list[LoadOutcome]:
    """Stream ``image`` from one engine or node straight into other engines and nodes: no tarball on disk."""
    return transfer.load(source_of(source, image), targets_of(targets), options, log)


def source_of(hook: TargetHook, image: str) -> Any:
    """An engine's export, or a node's content store read out as an OCI archive."""
    if getattr(hook, "conn_type", None) == "containerd":
        return hook.source(image)  # type: ignore[union-attr]
    return EngineSource(hook.client, image)  # type: ignore[union-attr]
