"""DockerLoadOperator: a docker-archive tarball -> one or many Docker Engines, streamed and verified."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, Context

from airflow_provider_artiload.artifacts import DockerArchive, LoadOutcome
from airflow_provider_artiload.exceptions import ArtiloadError
from airflow_provider_artiload.hooks import paths
from airflow_provider_artiload.hooks.engine import DockerEngineHook
from airflow_provider_artiload.hooks.targets import TargetHook, target_hooks
from airflow_provider_artiload.logs import quiet_libraries
from airflow_provider_artiload.operators import _assets
from airflow_provider_artiload.transfer import LoadOptions
from airflow_provider_artiload.transfer.retention import PruneReport, load_and_retain


class DockerLoadOperator(BaseOperator):
    """Load a docker-archive into one or more Docker Engines, then tag it.

    Per engine: if it already has the image, no bytes are sent and only the
    tags are applied (``skipped``); if it has some of the bottom layers (on
    either image store, or a containerd node), a thin archive without them is
    sent (``delta``, falling back to ``full`` if the engine rejects it); otherwise
    the whole archive (``full``). The tarball is read once for all engines of
    a batch and checked while it streams (sha256 of the artifact, or each
    layer's diff ID); on a mismatch no engine receives the archive's end, so
    none loads it. Tags are applied only once an engine has the image.

    Returns, for one engine, ``{"image_id", "tags", "engine", "mode",
    "bytes_sent", "seconds", "layers_sent", "layers_skipped"}``; for a list of
    engines, ``{"image_id", "tags", "targets": [one such dict per engine]}``.
    The task fails if any engine failed, after the others finished.

    Emits, through ``AssetAlias("artiload")``, an asset event per engine and
    repository of the tags: ``docker-image://<engine_conn_id>/<repository>``,
    extra ``image_id``, ``digest``, ``tags``, ``engine``, ``mode`` (see
    ``operators/_assets.py``).

    :param source: a docker-archive artifact (from SaveImageOperator or
        BuildArtifactOperator) or a path to a tarball. (templated)
    :param engine_conn_id: a ``docker_engine`` connection id, or a list of them
        to load into several engines at once. (templated)
    :param tag: a reference or list of references to apply, e.g.
        ``app:{{ ds_nodash }}``. (templated)
    :param skip_existing: send nothing to an engine that has the image.
    :param delta: send only the layers an engine lacks (both image stores and containerd nodes).
    :param max_parallel: how many engines to stream to at once.
    :param delete_source: remove the tarball once every engine has the image.
    :param platform: ``os/arch`` or ``os/arch/variant``: force this platform's image of a
        multi-platform archive on every target. Unset: each target gets the image of its own
        platform (its connection's ``platform`` extra, else what the engine or node reports),
        sent only that platform's blobs; a target whose platform the archive lacks fails alone,
        naming both. A single-platform archive loads everywhere, as ``docker load`` does (a
        target of another platform is logged). (templated)
    :param all_platforms: containerd-store engines and nodes get every platform's blobs and keep
        the index (its digest is the image ID); classic-store engines still get their platform's.
    :param keep_last: retention: mark what this load loads, then keep only the newest
        ``keep_last`` versions artiload loaded into each tag's repository on each target
        (by load time), plus those a container uses and what the tags named before this
        load (the rollback target); each target's report is under ``retention`` in the
        result (see docs/operators.md, "Retention and rollback"). Default: nothing marked
        or removed.
    :param dry_run: with ``keep_last``, only report what would be removed.
    :param pin: containerd nodes in ``k8s.io``: label what is loaded
        ``io.cri-containerd.pinned=pinned`` (default: the connection's ``pin`` extra, else true).
    """

    template_fields: Sequence[str] = ("source", "tag", "engine_conn_id", "platform")
    ui_color = "#c9f0d6"

    def __init__(
        self,
        *,
        source: str | Mapping[str, Any],
        engine_conn_id: str | Sequence[str] = DockerEngineHook.default_conn_name,
        tag: str | Sequence[str] | None = None,
        skip_existing: bool = True,
        delta: bool = True,
        max_parallel: int = 4,
        delete_source: bool = False,
        platform: str | None = None,
        keep_last: int | None = None,
        dry_run: bool = False,
        pin: bool | None = None,
        all_platforms: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.outlets = _assets.with_alias(self.outlets)
        self.all_platforms = all_platforms
        self.source = source
        self.platform = platform
        self.keep_last = keep_last
        self.dry_run = dry_run
        self.pin = pin
        self.delete_source = delete_source
        self.engine_conn_id = engine_conn_id
        self.tag = tag
        self.skip_existing = skip_existing
        self.delta = delta
        self.max_parallel = max_parallel

    @cached_property
    def hooks(self) -> list[TargetHook]:
        return target_hooks(self.engine_conn_id, pin=self.pin)

    def execute(self, context: Context) -> dict[str, Any]:
        options = LoadOptions(as_tags(self.tag), self.skip_existing, self.delta, self.max_parallel, self.platform or None,
                              all_platforms=self.all_platforms)
        source = as_source(self.source)
        try:
            with quiet_libraries():
                tarball = paths.file_source(source, platform=options.platform)
                outcomes, retained = load_and_retain(tarball, [hook.target for hook in self.hooks], options,
                                                     self.keep_last, self.dry_run, self.log)
                if self.delete_source:
                    paths.delete(source.path if isinstance(source, DockerArchive) else source)
                    self.log.info("Deleted %s: every engine has the image", getattr(source, "path", source))
        finally:
            for hook in self.hooks:
                hook.close()
        emit_loaded(context, self.hooks, outcomes, archive=source if isinstance(source, DockerArchive) else None)
        return xcom_result(self.engine_conn_id, outcomes, retained)

    def on_kill(self) -> None:
        for hook in self.hooks:
            hook.abort()


def emit_loaded(context: Context, hooks: Sequence[TargetHook], outcomes: Sequence[LoadOutcome],
                archive: DockerArchive | None = None) -> None:
    """An asset event per engine and repository (``docker-image://<conn id>/<repository>``)."""
    for hook, outcome in zip(hooks, outcomes):
        extra = {"engine": outcome.engine, "mode": outcome.mode}
        extra.update({k: v for k, v in (("platform", outcome.platform), ("manifest_digest", outcome.manifest_digest)) if v})
        if archive is not None:
            extra["archive_sha256"] = archive.sha256
        _assets.emit_images(context, getattr(hook, hook.conn_name_attr), outcome.to_xcom(), **extra)


def xcom_result(engine_conn_id: str | Sequence[str], outcomes: Sequence[LoadOutcome],
                retained: Sequence[Sequence[PruneReport]] = ()) -> dict[str, Any]:
    """One engine: its outcome; a list: the image, its tags and every engine's outcome (with ``retention``)."""
    results = [o.to_xcom() for o in outcomes]
    for result, reports in zip(results, retained):
        if reports:
            result["retention"] = [r.to_xcom() for r in reports]
    if isinstance(engine_conn_id, str):
        return results[0]
    return {"image_id": outcomes[0].image_id, "tags": outcomes[0].tags, "targets": results}


def as_source(source: str | Mapping[str, Any]) -> DockerArchive | Any:
    """An artifact from XCom, or a path (string or ObjectStoragePath) as given."""
    if isinstance(source, Mapping):
        return DockerArchive.from_xcom(source)
    if not str(source).strip():
        raise ArtiloadError("source is empty: give a docker-archive artifact or a tarball path")
    return source.strip() if isinstance(source, str) else source


def as_tags(tag: str | Sequence[str] | None) -> tuple[str, ...]:
    if not tag:
        return ()
    return (tag,) if isinstance(tag, str) else tuple(str(t) for t in tag)
