"""What the load loop and each load target say to each other: the plans and the LoadTarget protocol.

A Docker Engine (:mod:`.engine`) and a containerd node (:mod:`.node.target`)
implement :class:`LoadTarget`; a third kind (a registry, say) is a new
module, not a new branch in the load loop. The loop only ever:

1. asks each target for a :data:`Plan`, decided before any byte moves:

   - :class:`Skip`: the target has the image (by the ID its store gives it);
     only the tags are applied (:meth:`LoadTarget.tag`);
   - :class:`Send`: stream the archive, leaving out (``omit``) the blobs of
     the bottom ``have`` layers the target holds (a thin archive), adding a
     ``manifest.json`` where the target needs one; it names the layers the
     target would record ``unchecked`` (checked on our side, see
     :mod:`airflow_provider_artiload.oci.verify`), and a thin send carries
     its ``fallback``: the same send in full;
   - :class:`Unreachable`: planning failed; the other targets still load;

2. streams one read of the source to every :class:`Send` through
   :meth:`LoadTarget.upload`, each in its own thread;
3. once the stream has passed every check, lets each target
   :meth:`~LoadTarget.conclude`: confirm it holds the image, tag it, and
   report a :class:`~airflow_provider_artiload.artifacts.LoadOutcome` (or a
   :class:`Refused` thin send to redo in full, or the error).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_artiload.artifacts import LoadOutcome
from airflow_provider_artiload.exceptions import ArtiloadError
from airflow_provider_artiload.oci.image import Store

if TYPE_CHECKING:
    from airflow_provider_artiload.oci.image import Image
    from airflow_provider_artiload.transfer.sources import SourceInfo


@dataclass(frozen=True)
class LoadOptions:
    tags: tuple[str, ...] = ()
    skip_existing: bool = True
    delta: bool = True
    max_parallel: int = 4
    platform: str | None = None  # forces one platform on every target; unset: each target takes its own
    mark: bool = False  # give the loaded version a marker per repository: retention's candidate (transfer/retention.py)
    all_platforms: bool = False  # containerd stores and nodes: every platform's blobs, the index kept (transfer/platforms.py)


@dataclass(frozen=True)
class Skip:
    target: LoadTarget
    store: Store
    image_id: str
    # the source as this target sees it (its platform's image: transfer/platforms.py); None: as is
    info: Any = field(default=None, compare=False)


@dataclass(frozen=True)
class Send:
    target: LoadTarget
    store: Store
    have: int = 0  # bottom layers the target holds: left out (thin), or skipped unread by it (full)
    omit: frozenset[str] = field(default_factory=frozenset)
    add_manifest: bool = False
    # layer positions in the stream this target records without checking their diff IDs itself: checked on our side
    unchecked: frozenset[int] = field(default_factory=frozenset)
    # layer positions whose blob the target files under the digest of the bytes it got, not the one the archive
    # claims (a containerd store): their blob digest is checked on our side
    unchecked_blobs: frozenset[int] = field(default_factory=frozenset)
    present: bool = False  # the target held the image before: a failed load leaves its record alone
    fallback: Send | None = None  # what to do if the target refuses this thin archive: send everything
    retried: bool = False  # a full send redone once after the target lost content mid-load (engine.py)
    # the source as this target sees it (its platform's image: transfer/platforms.py); None: as is
    info: Any = field(default=None, compare=False)

    @property
    def mode(self) -> str:
        return "delta" if self.omit else "full"


@dataclass(frozen=True)
class Unreachable:
    target: Any
    error: ArtiloadError


Plan = Skip | Send | Unreachable


@dataclass(frozen=True)
class Refused:
    """A thin send the target did not turn into the image: redo it as ``fallback``."""

    fallback: Send
    reason: str


@dataclass(frozen=True)
class Streamed:
    """What the load loop knows once a stream ended: the checked image and the time it took."""

    image: Image | None
    seconds: float
    index: Any = None  # the checked archive's scan: a target picks its platform's image from it


class LoadTarget(Protocol):
    """A Docker Engine or a containerd node, as the load loop sees it."""

    @property
    def url(self) -> str:
        """Where the target is, for logs and outcomes."""

    def plan(self, info: SourceInfo, options: LoadOptions, log: logging.Logger) -> Plan:
        """Ask the target what it holds and decide; never raises (an error is :class:`~.plan.Unreachable`)."""

    def upload(self, send: Send, chunks: Iterator[bytes], info: SourceInfo, options: LoadOptions,
               log: logging.Logger) -> object:
        """Consume the (checked, end-withheld) stream; runs in a fan-out thread. Its return value goes to conclude."""

    def conclude(self, send: Send, uploaded: object, streamed: Streamed, info: SourceInfo, options: LoadOptions,
                 log: logging.Logger) -> LoadOutcome | Refused | BaseException:
        """After the stream: the outcome, a refused thin send, or the error (``uploaded`` may be one)."""

    def tag(self, image_id: str, tag: str) -> None:
        """Name the image the target holds as ``tag`` (a skip's tags)."""


def tagged_outcome(target: LoadTarget, image_id: str, mode: str, options: LoadOptions, log: logging.Logger, *,
                   sent: int, seconds: float, layers: tuple[int, int], archive_tags: list[str]) -> LoadOutcome:
    """Apply ``options.tags`` on ``target`` and report; ``layers`` is (skipped, total)."""
    for tag in options.tags:
        target.tag(image_id, tag)
        log.info("Tagged %s as %s on %s", image_id[:19], tag, target.url)
    skipped, total = layers
    if archive_tags:
        log.info("%s: the archive itself tagged the image %s", target.url, ", ".join(archive_tags))
    return LoadOutcome(
        image_id=image_id,
        tags=list(options.tags),
        engine=target.url,
        mode=mode,
        bytes_sent=sent,
        seconds=round(seconds, 3),
        layers_sent=total - skipped,
        layers_skipped=skipped,
        archive_tags=archive_tags,
    )
