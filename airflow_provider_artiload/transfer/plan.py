"""What to send to each target engine: a typed plan, decided before any byte moves.

- :class:`Skip`: the engine has the image (by the ID its store gives it);
  only the tags are applied.
- :class:`Send`: stream the archive, leaving out (``omit``) the blobs of the
  bottom ``have`` layers the engine holds (a thin archive), adding a
  ``manifest.json`` for a classic-store engine when the source is a pure OCI
  layout. A thin send carries its own fallback: the same send in full.
- :class:`Unreachable`: planning failed; the other engines still load.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from airflow_provider_artiload.engine.client import EngineClient
from airflow_provider_artiload.oci.layout import layers_present
from airflow_provider_artiload.exceptions import ArtiloadError, ImageNotFound
from airflow_provider_artiload.oci.image import Store, store_of
from airflow_provider_artiload.transfer.sources import SourceInfo


@dataclass(frozen=True)
class LoadOptions:
    tags: tuple[str, ...] = ()
    skip_existing: bool = True
    delta: bool = True
    max_parallel: int = 4
    platform: str | None = None


@dataclass(frozen=True)
class Skip:
    client: EngineClient
    store: Store
    image_id: str


@dataclass(frozen=True)
class Send:
    client: EngineClient
    store: Store
    have: int = 0  # bottom layers the engine holds: left out (thin), or skipped unread by it (full)
    omit: frozenset[str] = field(default_factory=frozenset)
    add_manifest: bool = False

    @property
    def mode(self) -> str:
        return "delta" if self.omit else "full"

    def fallback(self) -> Send | None:
        """What to do if the engine refuses this thin archive: send everything."""
        return replace(self, omit=frozenset()) if self.omit else None


@dataclass(frozen=True)
class Unreachable:
    client: EngineClient
    error: ArtiloadError


Plan = Skip | Send | Unreachable


def plan_target(client: EngineClient, info: SourceInfo, options: LoadOptions, log: logging.Logger) -> Plan:
    """Ask the engine what it has, and decide."""
    try:
        store = store_of(client.info())
        target_id = info.id_for(store)
        if options.skip_existing and target_id and has_image(client, target_id):
            log.info("%s already has %s: no layer bytes sent", client.url, target_id)
            return Skip(client, store, target_id)
        have = layers_present(client, info.diff_ids) if info.diff_ids else 0
    except ArtiloadError as exc:
        return Unreachable(client, exc)
    add_manifest = store == "classic" and not info.has_legacy_manifest
    names = info.layer_names
    thinnable = not info.compressed and (names is not None or info.placeable)  # a gzip stream cannot be thinned
    if not (thinnable and options.delta and have):
        return Send(client, store, have=have, add_manifest=add_manifest)
    if names is None:  # a stream: identified member by member as it passes
        omit = frozenset({f"#{position}" for position in range(have)})
    else:
        omit = frozenset(names[:have]) - frozenset(names[have:])
    log.info("%s has %d of %d layers: sending the other %d", client.url, have, len(info.diff_ids), len(info.diff_ids) - have)
    return Send(client, store, have=have, omit=omit, add_manifest=add_manifest)


def has_image(client: EngineClient, image_id: str) -> bool:
    """Does the engine hold exactly this image (its ``Id`` is ``image_id``)?"""
    try:
        return client.inspect_image(image_id)["Id"] == image_id
    except ImageNotFound:
        return False
