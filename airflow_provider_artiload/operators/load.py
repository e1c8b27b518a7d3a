"""DockerLoadOperator: a docker-archive tarball -> a Docker Engine, streamed and verified."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, Context

from airflow_provider_artiload.artifacts import DockerArchive
from airflow_provider_artiload.exceptions import ArtiloadError
from airflow_provider_artiload.hooks.engine import DockerEngineHook


class DockerLoadOperator(BaseOperator):
    """Load a docker-archive into a Docker Engine, then tag it.

    The tarball streams into the engine while its sha256 (and tar structure)
    is checked; on a mismatch the upload is cut before its end, so the engine
    loads nothing. Tags are applied only after the engine has the image with
    the artifact's ID. If the engine already has that image, no bytes are
    sent and only the tags are applied.

    Returns ``{"image_id", "tags", "engine", "mode", "bytes_sent", "seconds"}``.

    :param source: a docker-archive artifact (from SaveImageOperator or
        BuildArtifactOperator) or a path to a tarball. (templated)
    :param engine_conn_id: the ``docker_engine`` connection to load into.
    :param tag: a reference or list of references to apply, e.g.
        ``app:{{ ds_nodash }}``. (templated)
    :param skip_existing: send nothing if the engine has the image already.
    """

    template_fields: Sequence[str] = ("source", "tag")
    ui_color = "#c9f0d6"

    def __init__(
        self,
        *,
        source: str | Mapping[str, Any],
        engine_conn_id: str = DockerEngineHook.default_conn_name,
        tag: str | Sequence[str] | None = None,
        skip_existing: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.engine_conn_id = engine_conn_id
        self.tag = tag
        self.skip_existing = skip_existing

    @cached_property
    def hook(self) -> DockerEngineHook:
        return DockerEngineHook(self.engine_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            outcome = self.hook.load_archive(
                as_source(self.source), tags=as_tags(self.tag), skip_existing=self.skip_existing
            )
        finally:
            self.hook.close()
        return outcome.to_xcom()

    def on_kill(self) -> None:
        self.hook.abort()


def as_source(source: str | Mapping[str, Any]) -> DockerArchive | str:
    if isinstance(source, Mapping):
        return DockerArchive.from_xcom(source)
    if not str(source).strip():
        raise ArtiloadError("source is empty: give a docker-archive artifact or a tarball path")
    return str(source)


def as_tags(tag: str | Sequence[str] | None) -> list[str]:
    if not tag:
        return []
    return [tag] if isinstance(tag, str) else [str(t) for t in tag]
