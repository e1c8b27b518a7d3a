"""Asset events of the artiload operators (data-aware scheduling).

Every operator has the outlet ``AssetAlias("artiload")`` and, through it, emits one event per thing it
produced, whose URI is known only at run time:

- an image on an engine: ``docker-image://<engine connection id>/<repository>`` (one per repository
  among the tags, per engine). The tag is not in the URI: a DAG scheduled on
  ``Asset("docker-image://artiload_local/artiload/refresh")`` runs for every refresh of that
  repository, whatever its dated tag;
- a tarball: its own URI (``file:///…`` for local paths; object-storage URIs as Airflow accepts them).

The extra of each event: ``image_id``, ``digest`` (the image's config digest, or the tarball's sha256),
``tags`` and where it landed. In a partitioned run (Airflow 3.2+) also ``partition_key``, the run's key, which
Airflow attaches to the event as its partition too: each partition is tied to the digest it produced or loaded.
On Airflow 3.1 there are no partitions and the events are as they were. ``docker-image`` is registered as an asset URI scheme in
``get_provider_info`` (``asset-uris``) with :func:`sanitize_image_uri` as its handler.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import SplitResult

from airflow.sdk import Asset, AssetAlias

from airflow_provider_artiload.compat import partition_key

ALIAS = "artiload"
IMAGE_SCHEME = "docker-image"

log = logging.getLogger(__name__)


def alias() -> AssetAlias:
    return AssetAlias(ALIAS)


def with_alias(outlets: Iterable[Any] | None) -> list[Any]:
    """The operator's outlets plus the artiload alias (once)."""
    outlets = list(outlets or [])
    return outlets if any(isinstance(o, AssetAlias) and o.name == ALIAS for o in outlets) else [*outlets, alias()]


def image_uri(engine_conn_id: str, repository: str) -> str:
    return f"{IMAGE_SCHEME}://{engine_conn_id}/{repository}"


def tarball_uri(path: str) -> str:
    return f"file://{os.path.abspath(path)}" if "://" not in path else path


def repositories(tags: Iterable[str]) -> dict[str, list[str]]:
    """``{repository: [tags in it]}``; a tag's repository is everything before its last ``:`` after the last ``/``."""
    found: dict[str, list[str]] = {}
    for tag in tags:
        name = tag.split("@", 1)[0]
        slash = name.rfind("/")
        colon = name.rfind(":")
        repository = name[:colon] if colon > slash else name
        found.setdefault(repository, []).append(tag)
    return found


def emit(context: Mapping[str, Any] | None, uri: str, extra: dict[str, Any]) -> None:
    """One asset event through the alias; nothing outside a task run (e.g. ``op.execute({})``)."""
    events = (context or {}).get("outlet_events")
    if events is None:
        return
    try:
        asset = Asset(uri=uri)
    except (ValueError, TypeError) as exc:  # a URI Airflow does not accept as an asset: no event, say why
        log.warning("No asset event for %s: %s", uri, exc)
        return
    key = partition_key(context)
    events[alias()].add(asset, extra={**extra, "partition_key": key} if key else extra)


def emit_images(context: Mapping[str, Any] | None, engine_conn_id: str, outcome: Mapping[str, Any], **extra: Any) -> None:
    """Events for a load or build result (``image_id``, ``tags``) on the engine of ``engine_conn_id``."""
    for repository, tags in repositories(outcome.get("tags") or ()).items():
        emit(context, image_uri(engine_conn_id, repository),
             {"image_id": outcome["image_id"], "digest": outcome["image_id"], "tags": tags, **extra})


def emit_tarball(context: Mapping[str, Any] | None, artifact: Mapping[str, Any]) -> None:
    emit(context, tarball_uri(str(artifact["path"])), {
        "image_id": artifact.get("image_id"), "digest": artifact.get("sha256"),
        "tags": list(artifact.get("repo_tags") or []), "size": artifact.get("size"),
    })


def sanitize_image_uri(uri: SplitResult) -> SplitResult:
    """``docker-image://<engine connection id>/<repository>``: both parts required, no tag or digest."""
    if not uri.netloc:
        raise ValueError("URI format docker-image:// must name the engine connection id as its host")
    repository = uri.path.lstrip("/")
    if not repository:
        raise ValueError("URI format docker-image:// must contain a repository, e.g. docker-image://engine/app")
    if "@" in repository or ":" in repository.rsplit("/", 1)[-1]:
        raise ValueError("a docker-image:// URI names a repository: no tag or digest (they are in the event's extra)")
    return uri
