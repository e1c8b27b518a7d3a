"""A build's cache options, from the operator's ``cache_from`` / ``cache_to`` to a :class:`CachePlan`.

In order, before the build starts: parse and validate every entry (no I/O);
refuse exports the builder cannot do (the BuildKit inside a classic-store
Docker Engine exports only inline cache); open each ``type=local`` location
(a path or any ObjectStoragePath URL) and each ``type=s3`` bucket (with the
Airflow AWS connection ``aws_conn_id``: credentials stay on the worker, are
never logged and never reach the daemon) as a store the session serves.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_artiload.buildkit.cache import FROM, TO, CacheEntry, CachePlan, check_engine_exports, parse_cache
from airflow_provider_artiload.buildkit.cache_store import LayoutStore
from airflow_provider_artiload.endpoints import Endpoint
from airflow_provider_artiload.exceptions import ArtiloadError, BuildError


def parse_entries(cache_from: Any, cache_to: Any) -> tuple[CacheEntry, ...]:
    return parse_cache(cache_from, FROM) + parse_cache(cache_to, TO)


def open_store(entry: CacheEntry | str) -> LayoutStore:
    """The store behind a session-served entry: a ``type=local`` path or ObjectStoragePath URL
    (``s3://conn@bucket/prefix``, ``sftp://conn@/dir``...), or a ``type=s3`` bucket and prefix
    reached with the ``aws_conn_id`` connection's credentials (they stay on this worker)."""
    from airflow_provider_artiload.hooks.paths import as_target

    location = entry if isinstance(entry, str) else entry.location or ""
    try:
        if isinstance(entry, CacheEntry) and entry.type == "s3":
            from airflow.sdk import ObjectStoragePath

            attrs = entry.attrs
            client_kwargs = {k: attrs[a] for k, a in (("endpoint_url", "endpoint_url"), ("region_name", "region")) if attrs.get(a)}
            options: dict[str, Any] = {"client_kwargs": client_kwargs} if client_kwargs else {}
            if attrs.get("use_path_style", "").lower() == "true":
                options["config_kwargs"] = {"s3": {"addressing_style": "path"}}
            return LayoutStore(as_target(ObjectStoragePath(location, **options)), label=location)
        return LayoutStore(as_target(location), label=location)
    except ArtiloadError as exc:
        raise BuildError(f"cache location {location!r}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - fsspec/Airflow raise plain errors for bad URLs or missing providers
        name = entry.name if isinstance(entry, CacheEntry) else "cache"
        raise BuildError(f"{name}: cannot open cache location {location!r}: {type(exc).__name__}: {exc}") from exc


def engine_store(endpoint: Endpoint, timeout: float = 30.0) -> str | None:
    """``classic`` or ``containerd`` for the BuildKit inside a Docker Engine; None for a standalone BuildKit."""
    if endpoint.scheme != "docker" or endpoint.engine is None:
        return None
    from airflow_provider_artiload.engine.client import EngineClient
    from airflow_provider_artiload.oci.image import store_of
    from airflow_provider_artiload.transport import open_dialer

    engine = EngineClient(open_dialer(endpoint.engine), timeout=timeout)
    try:
        return store_of(engine.info())
    finally:
        engine.close()


def cache_plan(entries: tuple[CacheEntry, ...], *, endpoint: Endpoint, log: Any, timeout: float = 30.0) -> CachePlan | None:
    """Check the builder can do the exports, resolve credentials, open local/object-storage stores."""
    if not entries:
        return None
    if any(e.field == TO and e.type != "inline" for e in entries):
        store = engine_store(endpoint, timeout)
        if store is not None:
            where = endpoint.engine.url if endpoint.engine else endpoint.url
            entries = check_engine_exports(entries, store=store, where=where, log=log)
    plan = CachePlan.prepare(entries, open_store, log=log)
    log.info("Build cache: %s", plan.describe())
    return plan


__all__ = ["cache_plan", "engine_store", "open_store", "parse_entries"]
