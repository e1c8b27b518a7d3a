"""DockerEngineHook: an Airflow connection to a Docker Engine, and streaming save/load."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from airflow_provider_artiload.artifacts import DockerArchive, LoadOutcome
from airflow_provider_artiload.endpoints import Endpoint, parse_float
from airflow_provider_artiload.engine.client import EngineClient
from airflow_provider_artiload.engine.reference import is_image_id, parse_reference
from airflow_provider_artiload.exceptions import ArchiveError, ArtiloadError, EngineError, ImageNotFound
from airflow_provider_artiload.hooks.connection import default_endpoint, endpoint_from_connection
from airflow_provider_artiload.progress import Progress
from airflow_provider_artiload.storage import AtomicFile, VerifiedArchive, read_chunks
from airflow_provider_artiload.transport import open_dialer


class DockerEngineHook(BaseHook):
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
    def _extras(self) -> dict[str, Any]:
        conn = self._connection
        return dict(conn.extra_dejson or {}) if conn else {}

    @cached_property
    def _connection(self) -> Any | None:
        try:
            return self.get_connection(self.engine_conn_id)
        except AirflowNotFoundException:
            if self.engine_conn_id == self.default_conn_name:
                return None
            raise

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

    def save_image(self, image: str, path: str) -> DockerArchive:
        """Stream ``image`` into a docker-archive at ``path``; complete or absent."""
        info = self.client.inspect_image(image)
        name = image if not is_image_id(image) and not image.startswith(info["Id"]) else info["Id"]
        progress = Progress(self.log, f"Saving {image} from {self.endpoint} to {path}", total=info.get("Size"))
        with AtomicFile(path, expected_size=info.get("Size")) as out, self.client.export_image(name) as chunks:
            archive = VerifiedArchive(chunks, where=f"archive of {image} from {self.endpoint}")
            for chunk in archive:
                out.write(chunk)
                progress.add(len(chunk))
            index = archive.index
            assert index is not None
            saved_id = index.image_ids()[0]
            if saved_id != info["Id"]:
                raise EngineError(f"{self.endpoint}: {image} changed during the save ({info['Id']} -> {saved_id})")
            out.commit()
        progress.finish()
        return DockerArchive(
            path=path,
            sha256=out.sha256,
            size=out.size,
            image_id=info["Id"],
            repo_tags=list(index.manifest[0].get("RepoTags") or []),
            layers=list(info.get("RootFS", {}).get("Layers") or []),
        )

    def load_archive(
        self, source: DockerArchive | str, *, tags: Sequence[str] = (), skip_existing: bool = True
    ) -> LoadOutcome:
        """Stream a docker-archive into the engine, verified, then tag it.

        Tags are validated before anything is sent and applied only after the
        engine has the image with the expected ID.
        """
        for tag in tags:
            parse_reference(tag)
        artifact = source if isinstance(source, DockerArchive) else None
        path = artifact.path if artifact else str(source)
        if artifact and skip_existing and self._has_image(artifact.image_id):
            self.log.info("%s already has %s: no bytes sent, tagging only", self.endpoint, artifact.image_id)
            self._tag(artifact.image_id, tags)
            return LoadOutcome(image_id=artifact.image_id, tags=list(tags), engine=self.endpoint.url, mode="skipped")
        archive = VerifiedArchive(read_chunks(path), where=path, expected_sha256=artifact.sha256 if artifact else None)
        progress = Progress(self.log, f"Loading {path} into {self.endpoint}", total=artifact.size if artifact else None)
        self.client.load_image(_counted(archive, progress), on_status=self._log_status)
        progress.finish()
        image_id = self._loaded_image_id(archive, artifact, path)
        self._tag(image_id, tags)
        return LoadOutcome(
            image_id=image_id,
            tags=list(tags),
            engine=self.endpoint.url,
            mode="full",
            bytes_sent=archive.size,
            seconds=round(progress.seconds, 3),
        )

    def abort(self) -> None:
        """Cancel every transfer in flight (``on_kill``)."""
        if "client" in self.__dict__:
            self.client.abort()

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()

    def _has_image(self, image_id: str) -> bool:
        try:
            return self.client.inspect_image(image_id)["Id"] == image_id
        except ImageNotFound:
            return False

    def _loaded_image_id(self, archive: VerifiedArchive, artifact: DockerArchive | None, path: str) -> str:
        assert archive.index is not None
        ids = archive.index.image_ids()
        if artifact and artifact.image_id not in ids:
            raise ArchiveError(f"{path} holds {', '.join(ids)}, not the artifact's image {artifact.image_id}")
        image_id = artifact.image_id if artifact else ids[0]
        if not self._has_image(image_id):
            raise EngineError(f"{self.endpoint}: the load reported success but the engine has no image {image_id}")
        return image_id

    def _tag(self, image_id: str, tags: Sequence[str]) -> None:
        for tag in tags:
            self.client.tag_image(image_id, tag)
            self.log.info("Tagged %s as %s on %s", image_id[:19], tag, self.endpoint)

    def _log_status(self, message: dict[str, Any]) -> None:
        if message.get("status") and not message.get("progressDetail"):
            self.log.info("%s: %s %s", self.endpoint, message.get("status"), message.get("id", ""))


def _counted(chunks: Iterable[bytes], progress: Progress) -> Iterator[bytes]:
    for chunk in chunks:
        progress.add(len(chunk))
        yield chunk
