"""The clean-up of a build cache: delete what no export needs any more, after a grace period.

A blob goes only when no root references it (``index.json`` and every
export record younger than the grace period, see :mod:`.cache_store`) *and*
it was last written or reused longer ago than the grace period, so a build
running meanwhile never loses what it reads.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from airflow_provider_artiload.buildkit.cache_store import DIGEST_PATTERN, HEX_PATTERN, MAX_JSON, CacheStoreError, LayoutStore


@dataclass
class CleanupReport:
    removed_blobs: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    kept_blobs: int = 0
    removed_records: list[str] = field(default_factory=list)
    roots: list[str] = field(default_factory=list)


def clean(store: LayoutStore, *, grace_seconds: float, now: float | None = None) -> CleanupReport:
    """Delete blobs no root references that were last written or reused more than ``grace_seconds`` ago.

    Roots: every manifest in ``index.json`` and every export record younger
    than the grace period. Export records older than the grace period are
    removed (the index still names the latest export).
    """
    now = time.time() if now is None else now
    cutoff = now - grace_seconds
    report = CleanupReport()
    roots = [d["digest"] for d in store.read_index()["manifests"] if DIGEST_PATTERN.match(d.get("digest", ""))]
    for name, mtime in store.listing("artiload/exports"):
        data = store.read_small(f"artiload/exports/{name}")
        if data is None:
            continue
        if mtime < cutoff:
            store.remove(f"artiload/exports/{name}")
            report.removed_records.append(name)
            continue
        try:
            roots.append(json.loads(data)["descriptor"]["digest"])
        except (ValueError, KeyError, TypeError):
            continue
    report.roots = sorted(set(roots))
    reachable = _reachable(store, report.roots)
    used = dict(store.listing("artiload/used")) if store.remote else {}
    for name, mtime in store.listing("blobs/sha256"):
        if not HEX_PATTERN.match(name):
            continue  # a writer's temp file: its own code removes it
        if f"sha256:{name}" in reachable or max(mtime, used.get(name, 0.0)) >= cutoff:
            report.kept_blobs += 1
            continue
        size = store.size(f"sha256:{name}") or 0
        store.remove(f"blobs/sha256/{name}")
        if name in used:
            store.remove(f"artiload/used/{name}")
        report.removed_blobs.append(f"sha256:{name}")
        report.bytes_freed += size
    return report


def _reachable(store: LayoutStore, roots: list[str]) -> set[str]:
    """Every digest the roots reference, through indexes and manifests (cache configs name no new blobs)."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        digest = todo.pop()
        if digest in seen or not DIGEST_PATTERN.match(digest):
            continue
        seen.add(digest)
        size = store.size(digest)
        if size is None or size > MAX_JSON:
            continue
        try:
            with store.open_blob(digest) as handle:
                document = json.loads(handle.read(MAX_JSON + 1))
        except (ValueError, UnicodeDecodeError, CacheStoreError):
            continue  # a layer, not JSON
        if not isinstance(document, dict):
            continue
        for key in ("manifests", "layers", "blobs"):
            for desc in document.get(key) or []:
                if isinstance(desc, dict) and isinstance(desc.get("digest"), str):
                    todo.append(desc["digest"])
        config = document.get("config")
        if isinstance(config, dict) and isinstance(config.get("digest"), str):
            todo.append(config["digest"])
    return seen


__all__ = ["CleanupReport", "clean"]
