"""BuildArtifactOperator: a Dockerfile build with BuildKit -> an image in the engine or a tarball."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, Context

from airflow_provider_artiload.hooks.buildkit import BuildKitHook
from airflow_provider_artiload.logs import quiet_libraries
from airflow_provider_artiload.operators import _assets


class BuildArtifactOperator(BaseOperator):
    """Build a Dockerfile with BuildKit; the build log reads like ``docker build --progress=plain``.

    Returns (as XCom) one artifact, depending on ``export``:

    - ``"image"``: the image lands in the builder's engine (BuildKit's ``moby``
      exporter) under ``image``; returns ``{"kind": "image", "image",
      "image_id", "engine"}``, which SaveImageOperator accepts as its ``image``.
    - ``"docker"`` / ``"oci"``: a tarball streamed to ``output`` (temp name,
      renamed when complete, sha256 while streaming); returns the
      docker-archive artifact DockerLoadOperator accepts. The BuildKit inside
      a Docker Engine has no such exporters: the error says so and names the
      alternative (``export="image"``, then SaveImageOperator).
    - ``"tar"``: the image's root filesystem as a tarball at ``output``;
      returns ``{"kind": "tar", "path", "sha256", "size"}``.

    Emits an asset event through ``AssetAlias("artiload")``: for ``image``,
    ``docker-image://<engine>/<repository>`` (``<engine>`` is the builder
    connection's ``engine_conn_id`` extra, else ``buildkit_conn_id``); for a
    tarball, its URI (see ``operators/_assets.py``).

    :param context: the build context directory. (templated)
    :param dockerfile: the Dockerfile, relative to ``context`` unless
        absolute. (templated)
    :param image: the image name (``name:tag``); required for ``export="image"``. (templated)
    :param output: the tarball path for ``docker``, ``oci`` and ``tar``; stored as
        ``output_path`` (``output`` is BaseOperator's XComArg). (templated)
    :param export: ``image`` (default), ``docker``, ``oci`` or ``tar``.
    :param build_args: ``ARG`` values. (templated)
    :param target: the stage to build. (templated)
    :param labels: image labels. (templated)
    :param secrets: build secrets for ``RUN --mount=type=secret,id=ID``, as
        ``{ID: SOURCE}`` where SOURCE is ``{"conn_id": C}`` (that connection's
        password), ``{"variable": V}`` (an Airflow Variable), ``{"env": E}``
        (an environment variable of the worker) or ``{"file": PATH}``. Not
        templated; values are read when the task runs, served to the daemon
        only on request, and never logged or returned.
    :param no_cache: ignore the build cache.
    :param platform: target platform, e.g. ``linux/amd64``.
    :param platforms: several target platforms, e.g. ``["linux/amd64", "linux/arm64"]``, built in one
        solve into ONE artifact: an OCI index with a manifest per platform (``export="oci"`` or
        ``"docker"``), whose XCom lists them under ``platforms`` with each manifest digest. With
        ``export="image"`` only a containerd-store engine can hold the result; a classic-store engine
        is refused before the build. Foreign platforms' RUN steps need QEMU user emulation (binfmt_misc)
        on the builder host; without it the error names the platform and that fix. (templated)
    :param cache_from: build cache to import: one entry or a list, in buildx's
        syntax (``type=local,src=DIR``, ``type=registry,ref=HOST/REPO:TAG``,
        ``type=s3,bucket=B,region=R,aws_conn_id=C``), a dict of the same keys,
        or a bare location (a path or ``s3://``/``sftp://`` URL: the cache
        artiload's session serves from there). Bad entries fail before the
        build. (templated)
    :param cache_to: build cache to export, same forms (``type=local,dest=DIR,mode=max``,
        ``type=inline``...). The BuildKit inside a classic-store Docker Engine
        exports only ``type=inline``; other exports are refused before the build. (templated)
    :param buildkit_conn_id: the ``buildkit`` connection.
    """

    # ``output`` is kept as ``output_path``: BaseOperator.output is the task's XComArg.
    template_fields: Sequence[str] = (
        "context", "dockerfile", "image", "output_path", "build_args", "labels", "target", "cache_from", "cache_to",
        "platforms",
    )
    ui_color = "#e5f2e5"

    def __init__(
        self,
        *,
        context: str,
        dockerfile: str = "Dockerfile",
        image: str | None = None,
        output: str | None = None,
        export: str = "image",
        build_args: Mapping[str, str] | None = None,
        target: str | None = None,
        labels: Mapping[str, str] | None = None,
        secrets: Mapping[str, Mapping[str, str]] | None = None,
        no_cache: bool = False,
        platform: str | None = None,
        cache_from: str | Mapping[str, Any] | Sequence[str | Mapping[str, Any]] | None = None,
        cache_to: str | Mapping[str, Any] | Sequence[str | Mapping[str, Any]] | None = None,
        buildkit_conn_id: str = BuildKitHook.default_conn_name,
        platforms: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.outlets = _assets.with_alias(self.outlets)
        self.context = context
        self.dockerfile = dockerfile
        self.image = image
        self.output_path = output
        self.export = export
        self.build_args = build_args
        self.target = target
        self.labels = labels
        self.secrets = secrets
        self.no_cache = no_cache
        self.platform = platform
        self.cache_from = cache_from
        self.cache_to = cache_to
        self.buildkit_conn_id = buildkit_conn_id
        self.platforms = platforms

    @cached_property
    def hook(self) -> BuildKitHook:
        return BuildKitHook(self.buildkit_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            with quiet_libraries():
                result = self.hook.build(
                    context=self.context,
                    dockerfile=self.dockerfile,
                    export=self.export,
                    image=self.image,
                    output=self.output_path,
                    build_args=self.build_args,
                    target=self.target,
                    labels=self.labels,
                    secrets=self.hook.resolve_secrets(self.secrets),
                    no_cache=self.no_cache,
                    platform=self.platform,
                    cache_from=self.cache_from,
                    cache_to=self.cache_to,
                    platforms=self.platforms,
                )
        finally:
            self.hook.close()
        if result.get("kind") == "image":
            engine = self.hook.engine_conn_id or self.buildkit_conn_id
            _assets.emit_images(context, engine, {"image_id": result["image_id"], "tags": [result["image"]]},
                                engine=result.get("engine"))
        elif result.get("path"):
            _assets.emit_tarball(context, result)
        return result

    def on_kill(self) -> None:
        self.hook.cancel()
