"""BuildCacheCleanupOperator: keep a build cache location from growing forever."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from airflow_provider_artiload.buildkit.cache_cleanup import clean
from airflow_provider_artiload.buildkit.cache_store import CacheStoreError
from airflow_provider_artiload.exceptions import BuildError
from airflow_provider_artiload.hooks.cache import open_store


class BuildCacheCleanupOperator(BaseOperator):
    """Delete the blobs of a ``type=local`` build cache (a directory or object-storage URL) that no index needs.

    Kept: everything ``index.json`` (the latest export of each tag) references,
    everything an export of the last ``grace_period_hours`` references, and
    every blob written or reused by an export within that period (so builds
    running now, which may be importing or exporting, lose nothing). Returns
    ``{"removed": [digests], "bytes_freed": N, "kept": N}``.

    :param location: the cache location, as given to ``cache_to``'s ``dest``. (templated)
    :param grace_period_hours: how long an unreferenced blob is kept after its last use.
    """

    template_fields: Sequence[str] = ("location",)

    def __init__(self, *, location: str, grace_period_hours: float = 24, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.location = location
        self.grace_period_hours = grace_period_hours

    def execute(self, context: Context) -> dict[str, Any]:
        store = open_store(str(self.location))
        try:
            report = clean(store, grace_seconds=float(self.grace_period_hours) * 3600)
        except CacheStoreError as exc:
            raise BuildError(str(exc)) from exc
        self.log.info(
            "Build cache %s: removed %d blobs (%d bytes) and %d old export records; kept %d blobs",
            store.label, len(report.removed_blobs), report.bytes_freed, len(report.removed_records), report.kept_blobs,
        )
        return {"removed": report.removed_blobs, "bytes_freed": report.bytes_freed, "kept": report.kept_blobs}
