"""SaveImageOperator: an engine's image -> a docker-archive tarball, streamed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, Context

from airflow_provider_artiload.artifacts import IMAGE
from airflow_provider_artiload.exceptions import ArtiloadError
from airflow_provider_artiload.hooks.engine import DockerEngineHook
from airflow_provider_artiload.hooks.targets import TargetHook, target_hooks
from airflow_provider_artiload.logs import quiet_libraries
from airflow_provider_artiload.operators import _assets


class SaveImageOperator(BaseOperator):
    """Save an image from a Docker Engine to a docker-archive at ``path``.

    The archive is written under a temporary name and renamed when complete;
    its sha256 is computed while it streams. Returns the docker-archive
    artifact (``kind``, ``path``, ``sha256``, ``size``, ``image_id``,
    ``repo_tags``, ``layers``) as XCom, which DockerLoadOperator accepts.

    :param image: image reference, image ID, or an ``image`` artifact from
        BuildArtifactOperator. (templated)
    :param path: where to write the tarball. (templated)
    :param engine_conn_id: the ``docker_engine`` connection to save from, or a ``containerd``
        node (its content store read out as an OCI archive).
    :param platforms: of a multi-platform image on a containerd-store engine, save only these
        platforms (e.g. ``["linux/amd64", "linux/arm64"]``), through the Engine API's ``platform``
        parameter (API 1.48+, Docker 28); each is checked whole in the archive. Unset: what the
        engine saves (every platform it holds). From a containerd node: these images of the record's index,
        each whole on the node; unset, one (its connection's platform). (templated)
    """

    template_fields: Sequence[str] = ("image", "path", "platforms")
    ui_color = "#d8eefd"

    def __init__(
        self,
        *,
        image: str | Mapping[str, Any],
        path: str,
        engine_conn_id: str = DockerEngineHook.default_conn_name,
        platforms: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.outlets = _assets.with_alias(self.outlets)
        self.platforms = platforms
        self.image = image
        self.path = path
        self.engine_conn_id = engine_conn_id

    @cached_property
    def hook(self) -> TargetHook:
        """The engine's hook, or a ContainerdHook when the connection is a containerd node."""
        return target_hooks(self.engine_conn_id)[0]

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            with quiet_libraries():
                platforms = self.platforms.split(",") if isinstance(self.platforms, str) else list(self.platforms or ())
                artifact = (self.hook.save_image(image_ref(self.image), self.path, platforms) if platforms
                            else self.hook.save_image(image_ref(self.image), self.path)).to_xcom()
        finally:
            self.hook.close()
        _assets.emit_tarball(context, artifact)
        return artifact

    def on_kill(self) -> None:
        self.hook.abort()


def image_ref(image: str | Mapping[str, Any]) -> str:
    """The reference to use for an image given as a string or an ``image`` artifact."""
    if isinstance(image, Mapping):
        if image.get("kind") != IMAGE:
            raise ArtiloadError(f"image must be a reference or an artifact of kind 'image', got {dict(image)!r}")
        return str(image.get("image_id") or image["image"])
    if not str(image).strip():
        raise ArtiloadError("image is empty")
    return str(image).strip()
