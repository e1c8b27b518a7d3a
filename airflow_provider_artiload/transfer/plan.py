"""What to send to each load target: a typed plan, decided before any byte moves.

- :class:`Skip`: the target has the image (by the ID its store gives it);
  only the tags are applied.
- :class:`Send`: stream the archive, leaving out (``omit``) the blobs of the
  bottom ``have`` layers the target holds (a thin archive), adding a
  ``manifest.json`` where the target needs one and the source has none. A
  thin send carries its own ``fallback``: the same send in full.
- :class:`Unreachable`: planning failed; the other targets still load.

Each target kind decides its own plan (:meth:`LoadTarget.plan`); this module
only names the shapes, so the load loop never asks what kind a target is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_artiload.exceptions import ArtiloadError
from airflow_provider_artiload.oci.image import Store

if TYPE_CHECKING:
    from airflow_provider_artiload.transfer.targets import LoadTarget


@dataclass(frozen=True)
class LoadOptions:
    tags: tuple[str, ...] = ()
    skip_existing: bool = True
    delta: bool = True
    max_parallel: int = 4
    platform: str | None = None


@dataclass(frozen=True)
class Skip:
    target: LoadTarget
    store: Store
    image_id: str


@dataclass(frozen=True)
class Send:
    target: LoadTarget
    store: Store
    have: int = 0  # bottom layers the target holds: left out (thin), or skipped unread by it (full)
    omit: frozenset[str] = field(default_factory=frozenset)
    add_manifest: bool = False
    # layer positions in the stream this target records without checking them itself: checked on our side
    unchecked: frozenset[int] = field(default_factory=frozenset)
    fallback: Send | None = None  # what to do if the target refuses this thin archive: send everything

    @property
    def mode(self) -> str:
        return "delta" if self.omit else "full"


@dataclass(frozen=True)
class Unreachable:
    target: Any
    error: ArtiloadError


Plan = Skip | Send | Unreachable
