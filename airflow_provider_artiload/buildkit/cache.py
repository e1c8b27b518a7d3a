"""Build cache options: buildx's ``--cache-from`` / ``--cache-to`` syntax, validated before anything connects.

Each of ``cache_from`` and ``cache_to`` is one entry or a list of entries; an
entry is a buildx string (``type=local,dest=DIR,mode=max``), a dict
(``{"type": "registry", "ref": "host/repo:cache"}``) or a bare location:

- a path or URL (``/cache/app``, ``file:///...``, ``s3://conn@bucket/cache``,
  ``sftp://conn@/cache``): ``type=local`` with that ``dest`` / ``src``;
- anything else: ``type=registry,ref=...`` (as buildx reads a bare name).

``type=local`` and ``type=s3`` are served by artiload's session (see
:mod:`.session.content`): BuildKit reads and writes the cache through the
client, so ``dest``/``src`` may be any location the worker can reach, object
storage included, and ``type=s3`` works with engines whose BuildKit has no S3
backend (Docker's, even on the containerd store). Its credentials come from
an Airflow AWS connection (``aws_conn_id=``), never from the entry, and never
reach the daemon. The layout is an OCI image layout (buildx's ``type=local``
format) under ``s3://bucket/prefix``, not BuildKit's own S3 layout.
``type=registry`` and ``type=inline`` are done by BuildKit itself. Bad
entries raise :class:`BuildError` naming the field.

:class:`CachePlan` is what a build carries: the ``CacheOptions`` for the
``SolveRequest``, the frontend's ``cache-imports`` attribute, the session's
content stores, and after the build the ``index.json`` update of each
exported store.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_artiload.buildkit._proto import control_pb2
from airflow_provider_artiload.buildkit.cache_store import CacheStoreError, LayoutStore
from airflow_provider_artiload.buildkit.session.content import ContentStores
from airflow_provider_artiload.exceptions import BuildError

log = logging.getLogger(__name__)

FROM, TO = "cache_from", "cache_to"
COMPRESSION = {"compression", "compression-level", "force-compression", "oci-mediatypes", "image-manifest"}
EXPORT_COMMON = {"mode", "ignore-error"} | COMPRESSION
# type -> field -> attributes allowed (besides "type")
ALLOWED: dict[str, dict[str, set[str]]] = {
    "local": {TO: {"dest", "tag"} | EXPORT_COMMON, FROM: {"src", "tag", "digest"}},
    "registry": {TO: {"ref", "registry.insecure"} | EXPORT_COMMON, FROM: {"ref", "registry.insecure"}},
    "inline": {TO: {"mode"}, FROM: set()},
    "s3": {
        TO: {"bucket", "region", "endpoint_url", "prefix", "name", "use_path_style", "aws_conn_id"} | EXPORT_COMMON,
        FROM: {"bucket", "region", "endpoint_url", "prefix", "name", "use_path_style", "aws_conn_id"},
    },
}
SESSION_TYPES = ("local", "s3")  # served by artiload's session as BuildKit's "local" cache
WIRE_ATTRS = {"mode", "ignore-error"} | COMPRESSION  # what a session-served entry passes on to BuildKit
REQUIRED = {("local", TO): "dest", ("local", FROM): "src", ("registry", TO): "ref", ("registry", FROM): "ref"}
SECRET_ATTRS = ("access_key_id", "secret_access_key", "session_token")  # refused: use aws_conn_id
# Exporters the BuildKit inside a classic-store Docker Engine has (Docker 20.10 and 28 alike).
CLASSIC_ENGINE_EXPORTERS = ("inline",)


@dataclass(frozen=True)
class CacheEntry:
    """One validated cache import or export (never holding credentials: those come from connections)."""

    field: str  # cache_from or cache_to
    position: int
    type: str
    attrs: Mapping[str, str]

    @property
    def name(self) -> str:
        return f"{self.field}[{self.position}]"

    @property
    def location(self) -> str | None:
        """Where a session-served cache lives: ``dest``/``src`` of ``type=local`` (a path or URL), or
        ``s3://[aws_conn_id@]bucket/prefix`` of ``type=s3``; None for BuildKit's own types."""
        if self.type == "local":
            return self.attrs.get("dest" if self.field == TO else "src")
        if self.type == "s3":
            conn = self.attrs.get("aws_conn_id")
            prefix = self.attrs.get("prefix", "").strip("/")
            return f"s3://{conn + '@' if conn else ''}{self.attrs['bucket']}" + (f"/{prefix}" if prefix else "")
        return None

    @property
    def tag(self) -> str:
        """The ``index.json`` tag a session-served cache is exported under and imported from."""
        return self.attrs.get("name" if self.type == "s3" else "tag") or "latest"

    def describe(self) -> str:
        """For logs: type and attributes, never credentials."""
        return ",".join([f"type={self.type}"] + [f"{k}={v}" for k, v in sorted(self.attrs.items())])


def parse_cache(value: Any, field_name: str) -> tuple[CacheEntry, ...]:
    """``cache_from`` or ``cache_to`` as the operator got it -> validated entries (empty for None/"")."""
    if field_name not in (FROM, TO):
        raise ValueError(field_name)
    if value is None or value == "" or value == []:
        return ()
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    return tuple(_entry(item, field_name, i) for i, item in enumerate(items))


def _entry(item: Any, field_name: str, position: int) -> CacheEntry:
    where = f"{field_name}[{position}]"
    if isinstance(item, Mapping):
        attrs = {str(k): v for k, v in item.items()}
    elif isinstance(item, str):
        attrs = _parse_string(item.strip(), field_name, where)
    else:
        raise BuildError(f"{where}: expected a string like 'type=local,dest=DIR' or a dict, got {type(item).__name__}")
    for key, val in attrs.items():
        if isinstance(val, bool):
            attrs[key] = "true" if val else "false"
        elif not isinstance(val, (str, int, float)):
            raise BuildError(f"{where}: {key} must be a string, got {type(val).__name__}")
        else:
            attrs[key] = str(val)
    kind = attrs.pop("type", "")
    if not kind:
        raise BuildError(f"{where}: the entry has no type (one of {', '.join(ALLOWED)})")
    if kind not in ALLOWED:
        raise BuildError(f"{where}: unknown cache type {kind!r}; artiload supports {', '.join(ALLOWED)}")
    if kind == "inline" and field_name == FROM:
        raise BuildError(f"{where}: type=inline is export-only; import an image's inline cache with type=registry,ref=IMAGE")
    for secret in SECRET_ATTRS:
        if secret in attrs:
            raise BuildError(f"{where}: {secret} must not be written in the DAG: name an Airflow AWS connection with aws_conn_id=")
    unknown = sorted(set(attrs) - ALLOWED[kind][field_name])
    if unknown:
        allowed = ", ".join(sorted(ALLOWED[kind][field_name])) or "none"
        raise BuildError(f"{where}: type={kind} does not take {', '.join(unknown)} in {field_name} (allowed: {allowed})")
    required = REQUIRED.get((kind, field_name))
    if required and not attrs.get(required):
        raise BuildError(f"{where}: type={kind} needs {required}=" + ("DIR or URL" if kind == "local" else "HOST/REPO:TAG"))
    if kind == "s3":
        for key in ("bucket", "region"):
            if not attrs.get(key):
                raise BuildError(f"{where}: type=s3 needs {key}=")
        if "use_path_style" in attrs and attrs["use_path_style"].lower() not in ("true", "false"):
            raise BuildError(f"{where}: use_path_style must be true or false, got {attrs['use_path_style']!r}")
    if "mode" in attrs and attrs["mode"] not in ("min", "max"):
        raise BuildError(f"{where}: mode must be min or max, got {attrs['mode']!r}")
    if kind == "inline" and attrs.get("mode", "min") != "min":
        raise BuildError(f"{where}: type=inline exports mode=min only (the image carries the cache of its own layers)")
    if kind == "registry":
        from airflow_provider_artiload.oci.reference import InvalidReference, parse

        try:
            parse(attrs["ref"])
        except InvalidReference as exc:
            raise BuildError(f"{where}: ref={attrs['ref']!r} is not an image reference: {exc}") from None
    return CacheEntry(field_name, position, kind, attrs)


def _parse_string(text: str, field_name: str, where: str) -> dict[str, Any]:
    if not text:
        raise BuildError(f"{where}: empty entry")
    if "=" not in text.split(",", 1)[0]:
        # a bare location or image name, as buildx reads one
        if text.startswith(("/", ".", "~")) or "://" in text:
            return {"type": "local", ("dest" if field_name == TO else "src"): text}
        return {"type": "registry", "ref": text}
    try:
        fields = next(csv.reader([text]))
    except (csv.Error, StopIteration) as exc:
        raise BuildError(f"{where}: cannot read {text!r}: {exc}") from None
    attrs: dict[str, Any] = {}
    for part in fields:
        key, sep, val = part.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise BuildError(f"{where}: {part!r} is not key=value")
        if key in attrs:
            raise BuildError(f"{where}: {key} is given twice")
        attrs[key] = val
    return attrs


def needs_exporters(entries: Sequence[CacheEntry]) -> list[str]:
    """The exporter types the build asks its BuildKit for (``cache_to`` entries)."""
    return sorted({e.type for e in entries if e.field == TO})


def check_engine_exports(entries: Sequence[CacheEntry], *, store: str, where: str, log: Any = log) -> tuple[CacheEntry, ...]:
    """Refuse, before the build, cache exports a classic-store engine's BuildKit cannot do.

    An entry with ``ignore-error=true`` (buildx's "an export failure must not
    fail the build") is dropped with a warning instead; returns the entries kept.
    """
    if store != "classic":
        return tuple(entries)
    kept = []
    for entry in entries:
        if entry.field != TO or entry.type in CLASSIC_ENGINE_EXPORTERS:
            kept.append(entry)
            continue
        reason = (
            f"{entry.name}: the BuildKit inside the Docker Engine at {where} uses the classic image store and "
            f"exports only inline cache, not type={entry.type}"
        )
        if entry.attrs.get("ignore-error", "").lower() == "true":
            log.warning("%s; skipping this export (ignore-error=true)", reason)
            continue
        raise BuildError(
            f"{reason}. Use one of: a Docker Engine with the containerd image store (daemon.json "
            "features.containerd-snapshotter=true, the default from Docker 29), a standalone BuildKit (buildkitd), "
            "or cache_to='type=inline' (then cache_from='type=registry,ref=IMAGE' after a push)"
        )
    return tuple(kept)


@dataclass
class CachePlan:
    """A build's cache imports and exports, with the stores artiload serves for ``type=local``."""

    entries: tuple[CacheEntry, ...]
    stores: dict[str, LayoutStore] = field(default_factory=dict)  # location -> store
    imports: list[tuple[str, dict[str, str]]] = field(default_factory=list, repr=False)
    exports: list[tuple[str, dict[str, str]]] = field(default_factory=list, repr=False)
    skipped: list[str] = field(default_factory=list)
    manifest: dict[str, Any] | None = None

    @classmethod
    def prepare(cls, entries: Sequence[CacheEntry], open_store: Callable[[CacheEntry], LayoutStore], *,
                log: Any = log) -> CachePlan:
        """Open each session-served location; an import whose store has no index entry yet is skipped (a cold build)."""
        plan = cls(tuple(entries))
        for entry in entries:
            kind, attrs = entry.type, dict(entry.attrs)
            if entry.type in SESSION_TYPES:
                location = entry.location or ""
                store = plan.stores.get(location) or open_store(entry)
                plan.stores[location] = store
                kind = "local"
                attrs = {k: v for k, v in attrs.items() if k in WIRE_ATTRS or k == "digest"}
                attrs["dest" if entry.field == TO else "src"] = location
                if entry.field == FROM and not attrs.get("digest"):
                    try:
                        desc = store.latest(entry.tag)
                    except CacheStoreError as exc:
                        raise BuildError(f"{entry.name}: {exc}") from exc
                    if desc is None:
                        plan.skipped.append(location)
                        log.info("Cache %s has no index yet: nothing to import (the first build fills it)", store.label)
                        continue
                    attrs["digest"] = desc["digest"]
            (plan.exports if entry.field == TO else plan.imports).append((kind, attrs))
        return plan

    def options(self) -> control_pb2.CacheOptions:
        return control_pb2.CacheOptions(
            Exports=[control_pb2.CacheOptionsEntry(Type=t, Attrs=a) for t, a in self.exports],
            Imports=[control_pb2.CacheOptionsEntry(Type=t, Attrs=a) for t, a in self.imports],
        )

    def frontend_attrs(self) -> dict[str, str]:
        """The Dockerfile frontend resolves imports itself from ``cache-imports`` (as buildx sends them)."""
        if not self.imports:
            return {}
        return {"cache-imports": json.dumps([{"Type": t, "Attrs": a} for t, a in self.imports])}

    def attachables(self) -> list[Any]:
        return [ContentStores({f"local:{loc}": store for loc, store in self.stores.items()})] if self.stores else []

    def finish(self, exporter_response: Mapping[str, str], *, log: Any = log) -> None:
        """After the build: point each exported store's ``index.json`` at the new cache manifest."""
        for store in self.stores.values():
            store.close()
        targets = [e for e in self.entries if e.field == TO and e.type in SESSION_TYPES]
        if not targets:
            return
        raw = exporter_response.get("cache.manifest")
        if not raw:
            raise BuildError("the build exported cache but BuildKit reported no cache manifest (cache.manifest)")
        try:
            self.manifest = json.loads(raw)
        except ValueError as exc:
            raise BuildError(f"BuildKit's cache.manifest is not JSON: {raw[:200]!r}") from exc
        for entry in targets:
            store = self.stores[entry.location or ""]
            try:
                store.record_export(self.manifest, tag=entry.tag)
            except CacheStoreError as exc:
                raise BuildError(f"{entry.name}: {exc}") from exc
            stats = store.stats
            log.info("Cache exported to %s: %d blobs uploaded (%d bytes), %d already there",
                     store.label, stats.blobs_written, stats.bytes_written, stats.blobs_skipped)

    def describe(self) -> str:
        return "; ".join(e.name + " " + e.describe() for e in self.entries)


__all__ = ["CacheEntry", "CachePlan", "check_engine_exports", "parse_cache"]
