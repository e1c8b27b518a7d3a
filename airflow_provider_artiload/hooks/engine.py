"""DockerEngineHook: an Airflow connection to a Docker Engine -> its API client, load target and source."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook
from airflow.utils.net import get_hostname

from airflow_provider_artiload import transfer
from airflow_provider_artiload.artifacts import DockerArchive, LoadOutcome
from airflow_provider_artiload.endpoints import Endpoint, parse_float
from airflow_provider_artiload.engine.client import EngineClient
from airflow_provider_artiload.exceptions import ArtiloadError, EndpointError
from airflow_provider_artiload.oci.platform import InvalidPlatform
from airflow_provider_artiload.oci.platform import parse as parse_platform
from airflow_provider_artiload.hooks.connection import ConnectionBacked, default_endpoint, endpoint_from_connection
from airflow_provider_artiload.hooks.paths import as_target, file_source
from airflow_provider_artiload.transfer.engine import EngineSource, EngineTarget
from airflow_provider_artiload.transport import open_dialer


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

    @cached_property
    def target(self) -> EngineTarget:
        """This engine as a load target; its platform is the ``platform`` extra, else what the engine reports."""
        return EngineTarget(self.client, platform=self.platform)

    @cached_property
    def platform(self) -> str | None:
        """The connection's ``platform`` extra (``os/arch[/variant]``), checked; None: ask the engine."""
        value = self._extras.get("platform")
        if value is None:
            return None
        if not isinstance(value, str):
            raise EndpointError(f"connection {self.engine_conn_id!r}: extra 'platform' must be text such as linux/arm64, got {value!r}")
        try:
            return str(parse_platform(value, what="platform"))
        except InvalidPlatform as exc:
            raise EndpointError(f"connection {self.engine_conn_id!r}: extra {exc}") from None

    def source(self, image: str) -> EngineSource:
        """``image`` streamed out of this engine (for copies)."""
        return EngineSource(self.client, image)

    def save_image(self, image: str, path: str | Any, platforms: Sequence[str] = ()) -> DockerArchive:
        """Stream ``image`` into a docker-archive at ``path`` (local or an object-storage URI); complete or absent.
        ``platforms``: only those of a multi-platform image (API 1.48+); none: what the engine saves."""
        artifact = transfer.save_image(self.client, image, as_target(path), self.log, platforms)
        return dataclasses.replace(artifact, hostname=get_hostname())

    def load_archive(
        self, source: DockerArchive | str, *, tags: Sequence[str] = (), skip_existing: bool = True, delta: bool = True
    ) -> LoadOutcome:
        """Stream a docker-archive into this engine (the load operator does several at once)."""
        options = transfer.LoadOptions(tuple(tags), skip_existing, delta)
        return transfer.load(file_source(source), [self.target], options, self.log)[0]

    def abort(self) -> None:
        """Cancel every transfer in flight (``on_kill``)."""
        if "client" in self.__dict__:
            self.client.abort()

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()
