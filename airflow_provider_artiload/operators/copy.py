"""CopyImageOperator: an image streamed from one engine straight into others, no tarball on disk."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, Context

from airflow_provider_artiload.hooks.targets import TargetHook, target_hooks
from airflow_provider_artiload.logs import quiet_libraries
from airflow_provider_artiload.operators import _assets
from airflow_provider_artiload.operators.load import as_tags, emit_loaded, xcom_result
from airflow_provider_artiload.operators.save import image_ref
from airflow_provider_artiload.transfer import LoadOptions
from airflow_provider_artiload.transfer.retention import load_and_retain


class CopyImageOperator(BaseOperator):
    """Stream ``image`` from the source engine into one or more target engines.

    The export (``docker save``) is piped into each target's load as it
    arrives, with the same per-target skip/delta/full decision, verification
    and tagging as DockerLoadOperator. Returns the same XCom shape and emits
    the same asset events.

    :param image: reference, image ID, or an ``image`` artifact. (templated)
    :param source_engine_conn_id: the ``docker_engine`` connection to read from.
    :param engine_conn_id: target connection id, or a list of them. (templated)
    :param tag: reference(s) to apply on each target. (templated)
    :param skip_existing: send nothing to an engine that has the image.
    :param delta: send only the layers an engine lacks (both image stores and containerd nodes).
    :param max_parallel: how many targets to stream to at once.
    :param keep_last: retention after the copy, as DockerLoadOperator's ``keep_last``.
    :param dry_run: with ``keep_last``, only report what would be removed.
    :param pin: containerd nodes in ``k8s.io``: pin what is loaded (default: the connection's ``pin``, else true).
    :param platform: force this platform's image of a multi-platform source on every target; unset:
        each target gets its own platform's, as DockerLoadOperator. (templated)
    :param all_platforms: containerd-store engines and nodes keep the whole index, as DockerLoadOperator.
    """

    template_fields: Sequence[str] = ("image", "tag", "engine_conn_id", "platform")
    ui_color = "#e3d9f7"

    def __init__(
        self,
        *,
        image: str | Mapping[str, Any],
        source_engine_conn_id: str,
        engine_conn_id: str | Sequence[str],
        tag: str | Sequence[str] | None = None,
        skip_existing: bool = True,
        delta: bool = True,
        max_parallel: int = 4,
        keep_last: int | None = None,
        dry_run: bool = False,
        pin: bool | None = None,
        platform: str | None = None,
        all_platforms: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.outlets = _assets.with_alias(self.outlets)
        self.platform = platform
        self.all_platforms = all_platforms
        self.image = image
        self.keep_last = keep_last
        self.dry_run = dry_run
        self.pin = pin
        self.source_engine_conn_id = source_engine_conn_id
        self.engine_conn_id = engine_conn_id
        self.tag = tag
        self.skip_existing = skip_existing
        self.delta = delta
        self.max_parallel = max_parallel

    @cached_property
    def source_hook(self) -> TargetHook:
        """An engine, or a containerd node (its content store read out as an OCI archive)."""
        return target_hooks(self.source_engine_conn_id)[0]

    @cached_property
    def target_hooks(self) -> list[TargetHook]:
        return target_hooks(self.engine_conn_id, pin=self.pin)

    def execute(self, context: Context) -> dict[str, Any]:
        options = LoadOptions(as_tags(self.tag), self.skip_existing, self.delta, self.max_parallel, self.platform or None,
                              all_platforms=self.all_platforms)
        try:
            with quiet_libraries():
                source = self.source_hook.source(image_ref(self.image))
                outcomes, retained = load_and_retain(source, [hook.target for hook in self.target_hooks], options,
                                                     self.keep_last, self.dry_run, self.log)
        finally:
            for hook in (self.source_hook, *self.target_hooks):
                hook.close()
        emit_loaded(context, self.target_hooks, outcomes)
        return xcom_result(self.engine_conn_id, outcomes, retained)

    def on_kill(self) -> None:
        for hook in (self.source_hook, *self.target_hooks):
            hook.abort()
