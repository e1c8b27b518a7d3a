"""LoadTarget: what :func:`~airflow_provider_artiload.transfer.load.load` asks of a place images go.

A Docker Engine (:mod:`.engine`) and a containerd node (:mod:`.node.target`)
implement it; a third kind (a registry, say) is a new module, not a new
branch in the load loop. The loop only ever:

1. asks each target for a :class:`~.plan.Plan` (what it holds, its store,
   which layers it would record unchecked);
2. streams one read of the source to every :class:`~.plan.Send` through
   :meth:`LoadTarget.upload`, each in its own thread;
3. once the stream has passed every check, lets each target
   :meth:`~LoadTarget.conclude`: confirm it holds the image, tag it, and
   report a :class:`~airflow_provider_artiload.artifacts.LoadOutcome` (or a
   :class:`Refused` thin send to redo in full, or the error);
4. for a :class:`~.plan.Skip`, only applies the tags through :meth:`~LoadTarget.tag`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from airflow_provider_artiload.artifacts import LoadOutcome

if TYPE_CHECKING:
    from airflow_provider_artiload.oci.image import Image
    from airflow_provider_artiload.transfer.plan import LoadOptions, Plan, Send
    from airflow_provider_artiload.transfer.sources import SourceInfo


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
