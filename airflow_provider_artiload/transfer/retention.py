"""Images over time on a target: mark what artiload loads, keep the newest few, prune the rest, roll back.

Every kind of target answers the same small questions for itself
(:class:`Lifecycle`: a Docker Engine in ``transfer/engine_lifecycle.py``, a
containerd node in ``transfer/node/lifecycle.py``); the policy is here, once,
so engines on both stores and nodes behave the same.

**Marks.** A load with retention on (``LoadOptions.mark``) gives the version
it loaded one *marker* name per repository, ``<repository>:artiload-<UTC load
time>``, on the target itself: a tag on an engine (engines cannot relabel an
image), an image record on a node (with the load time also as a label). A
version is one image ID; reloading it moves its marker to the new time. Only
marked versions are candidates; an image someone pulled, built or loaded
otherwise never carries a marker, so it is never touched, whatever its tag.

**Pruning** a repository to ``keep_last`` versions, by load time (never by tag
spelling), keeps also every version that

- a container uses, running or stopped (on a node: in the namespace);
- is protected by the load that asked: what its tags pointed at before it
  (the rollback target) and what it just loaded;
- has a name outside the repository (someone else's claim on it).

The rest lose every name they have in the repository (markers and tags),
one name at a time and never forced, so the target itself refuses to drop
what a container started meanwhile; a concurrent load that claims a version
first (its new marker) keeps it alive, as its new name was never listed.

**Rolling back** re-points a tag at the version loaded before the one it
names now; no bytes move.

**Making room.** With retention on, a target that can say how much space it
has (:meth:`Lifecycle.free_space`) is checked before the load against the
source's size; if it is short, the repository is pruned first and checked
again, and only then does the load fail (``DestinationError``, both figures).
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_artiload.exceptions import ArtiloadError, DestinationError, ImageNotFound, RetentionError
from airflow_provider_artiload.oci.reference import normalize, parse
from airflow_provider_artiload.progress import human

if TYPE_CHECKING:
    from airflow_provider_artiload.artifacts import LoadOutcome
    from airflow_provider_artiload.transfer.plan import LoadOptions, LoadTarget
    from airflow_provider_artiload.transfer.sources import Source

MARKER_PREFIX = "artiload-"
_MARKER = re.compile(r"artiload-(\d{8}T\d{6})\.(\d{6})Z")
LOADED_AT_LABEL = "io.artiload.loaded-at"  # on a node's marker records (engines have only the marker tag)


@dataclass(frozen=True)
class Version:
    """One image artiload loaded into a repository on a target."""

    image_id: str
    loaded_at: str  # ISO 8601 UTC, from its marker
    names: tuple[str, ...]  # every name it has in the repository (markers included), as the target spells them
    markers: tuple[str, ...] = ()
    foreign: tuple[str, ...] = ()  # names outside the repository: someone else's claim
    size: int | None = None  # what the target reports (shared layers included)
    layers: tuple[str, ...] = field(default=(), compare=False)  # a node's top snapshot chain etc.: kind's own use


@dataclass(frozen=True)
class PruneReport:
    target: str
    repository: str
    keep_last: int
    dry_run: bool
    kept: list[dict[str, Any]]
    removed: list[dict[str, Any]]
    freed_bytes: int

    def to_xcom(self) -> dict[str, Any]:
        return {"target": self.target, "repository": self.repository, "keep_last": self.keep_last,
                "dry_run": self.dry_run, "kept": self.kept, "removed": self.removed, "freed_bytes": self.freed_bytes}


class Lifecycle(Protocol):
    """What a target kind answers for retention and rollback (its names, containers, space)."""

    @property
    def url(self) -> str: ...

    def pointed(self, tags: Sequence[str]) -> dict[str, str | None]:
        """The image ID each tag names now (None: no such tag)."""

    def versions(self, repository: str) -> list[Version]:
        """Every marked version in ``repository``, any order."""

    def in_use(self, versions: Sequence[Version]) -> set[str]:
        """The IDs among ``versions`` that a container (running or stopped) uses."""

    def remove(self, versions: Sequence[Version], log: logging.Logger) -> tuple[list[Version], int]:
        """Drop every name each version has in its repository; the versions gone and the bytes freed."""

    def point(self, tag: str, version: Version) -> None:
        """Name ``version`` as ``tag`` (a rollback)."""

    def free_space(self) -> tuple[int, str] | None:
        """Free bytes where the target keeps images, and that place; None where it cannot say."""


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def marker_tag(loaded_at: str) -> str:
    """``artiload-20261207T012110.123456Z`` for ``2026-12-07T01:21:10.123456Z``: a valid tag that sorts by time."""
    return MARKER_PREFIX + loaded_at.replace("-", "").replace(":", "")


def marker_time(tag: str) -> str | None:
    """The load time a marker tag records; None if ``tag`` is not a marker."""
    m = _MARKER.fullmatch(tag)
    if m is None:
        return None
    d, t = m.group(1).split("T")
    return f"{d[:4]}-{d[4:6]}-{d[6:]}T{t[:2]}:{t[2:4]}:{t[4:]}.{m.group(2)}Z"


def repository_of(reference: str) -> str:
    """The fully qualified repository of a reference or repository (``app:1`` and ``app`` -> ``docker.io/library/app``)."""
    ref = parse(reference)
    return normalize(ref.repository).rsplit(":", 1)[0]


def split_name(name: str) -> tuple[str, str] | None:
    """(qualified repository, tag) of an image name; None for a digest-only or unparsable name."""
    try:
        ref = parse(name)
    except ArtiloadError:
        return None
    if ref.tag is None:
        return None
    return repository_of(ref.repository), ref.tag


def repositories(tags: Iterable[str]) -> list[str]:
    """The distinct qualified repositories of ``tags``, in order."""
    out: list[str] = []
    for tag in tags:
        repo = repository_of(tag)
        if repo not in out:
            out.append(repo)
    return out


def decide(versions: Sequence[Version], keep_last: int, *, protect: set[str],
           in_use: set[str]) -> tuple[list[tuple[Version, str]], list[Version]]:
    """(kept with the reason, removable): newest ``keep_last`` by load time, then the rules above."""
    if keep_last < 1:
        raise RetentionError(f"keep_last must be at least 1, got {keep_last!r}")
    ordered = sorted(versions, key=lambda v: (v.loaded_at, v.image_id), reverse=True)
    kept: list[tuple[Version, str]] = []
    removable: list[Version] = []
    for rank, version in enumerate(ordered):
        if rank < keep_last:
            kept.append((version, f"newest {keep_last}"))
        elif version.image_id in protect:
            kept.append((version, "the tag named it before this load (rollback target), or this load"))
        elif version.image_id in in_use:
            kept.append((version, "a container uses it"))
        elif version.foreign:
            kept.append((version, f"also named outside the repository: {', '.join(version.foreign)}"))
        else:
            removable.append(version)
    return kept, removable


def prune(lifecycle: Lifecycle, repository: str, keep_last: int, *, protect: Iterable[str] = (), dry_run: bool = False,
          log: logging.Logger) -> PruneReport:
    """Keep ``keep_last`` versions of ``repository`` on the target; report what went and the space freed."""
    repository = repository_of(repository)
    versions = lifecycle.versions(repository)
    kept, removable = decide(versions, keep_last, protect=set(protect), in_use=lifecycle.in_use(versions))
    freed = 0
    removed = removable
    if removable and not dry_run:
        removed, freed = lifecycle.remove(removable, log)
        for version in removable:
            if version not in removed:
                kept.append((version, "claimed again while pruning (a concurrent load or container)"))
    verb = "would remove" if dry_run else "removed"
    for version in removed:
        log.info("%s: %s %s %s (loaded %s; %s)", lifecycle.url, verb, repository, version.image_id[:19], version.loaded_at,
                 ", ".join(version.names))
    log.info("%s: %s keeps %d version(s), %s %d, freed %s", lifecycle.url, repository, len(kept), verb, len(removed),
             human(freed))
    return PruneReport(
        target=lifecycle.url, repository=repository, keep_last=keep_last, dry_run=dry_run,
        kept=[{**_describe(v), "why": why} for v, why in kept],
        removed=[_describe(v) for v in removed],
        freed_bytes=freed,
    )


def previous_version(lifecycle: Lifecycle, tag: str) -> tuple[str | None, Version]:
    """(what ``tag`` names now, the version loaded before it); RetentionError naming what exists if none."""
    repository = repository_of(tag)
    versions = sorted(lifecycle.versions(repository), key=lambda v: (v.loaded_at, v.image_id), reverse=True)
    current = lifecycle.pointed([tag])[tag]
    listed = "; ".join(f"{v.image_id[:19]} loaded {v.loaded_at}" for v in versions) or "none"
    at = next((i for i, v in enumerate(versions) if v.image_id == current), None)
    if at is None:
        raise RetentionError(f"{lifecycle.url}: cannot roll back {tag}: it names {current or 'nothing'}, not a version "
                             f"artiload loaded into {repository} (versions there: {listed})")
    if at + 1 >= len(versions):
        raise RetentionError(f"{lifecycle.url}: cannot roll back {tag}: {current[:19]} is the oldest version artiload "
                             f"loaded into {repository} that is still there (versions: {listed})")
    return current, versions[at + 1]


def rollback(lifecycle: Lifecycle, tag: str, log: logging.Logger) -> dict[str, Any]:
    """Re-point ``tag`` at the version loaded before the one it names; no transfer."""
    current, previous = previous_version(lifecycle, tag)
    lifecycle.point(tag, previous)
    log.info("%s: rolled %s back from %s to %s (loaded %s)", lifecycle.url, tag, (current or "")[:19],
             previous.image_id[:19], previous.loaded_at)
    return {"target": lifecycle.url, "tag": tag, "from": current, "to": previous.image_id, "loaded_at": previous.loaded_at}


def load_and_retain(source: Source, targets: Sequence[LoadTarget], options: LoadOptions, keep_last: int | None,
                    dry_run: bool, log: logging.Logger) -> tuple[list[LoadOutcome], list[list[PruneReport]]]:
    """The load, and with ``keep_last`` the marks and the prune after it succeeded (per target, per repository)."""
    from airflow_provider_artiload.transfer.load import load

    if keep_last is None:
        return load(source, targets, options, log), [[] for _ in targets]
    if keep_last < 1:
        raise RetentionError(f"keep_last must be at least 1, got {keep_last!r}")
    lifecycles = [target.lifecycle for target in targets]  # type: ignore[attr-defined]
    before = [lifecycle.pointed(options.tags) for lifecycle in lifecycles]  # the rollback targets
    needed = source.info().size or 0
    early = [make_room(lifecycle, repositories(options.tags), needed, keep_last,
                       protect={i for i in pointed.values() if i}, dry_run=dry_run, log=log)
             for lifecycle, pointed in zip(lifecycles, before)]
    outcomes = load(source, targets, replace(options, mark=True), log)
    reports = []
    for lifecycle, pointed, outcome, first in zip(lifecycles, before, outcomes, early):
        protect = {i for i in pointed.values() if i} | {outcome.image_id}
        repos = repositories(options.tags or outcome.archive_tags)
        reports.append(first + [prune(lifecycle, repo, keep_last, protect=protect, dry_run=dry_run, log=log)
                                for repo in repos])
        keep_tags(lifecycle, outcome.image_id, options.tags, log)
    return outcomes, reports


def claim_before_skip(lifecycle: Lifecycle, image_id: str, options: LoadOptions, log: logging.Logger) -> bool:
    """With retention on, mark the image a target is about to skip: a prune racing the load cannot take it
    from then on. False when it was pruned since the target looked: send it instead."""
    if not (options.mark and options.tags):
        return True
    try:
        lifecycle.mark(image_id, options.tags, log)
    except ImageNotFound:
        return False
    return True


def keep_tags(lifecycle: Lifecycle, image_id: str, tags: Sequence[str], log: logging.Logger, *, rounds: int = 3) -> None:
    """Make sure the load's tags name what it loaded: the Docker API has no compare-and-delete for a tag,
    so a concurrent prune that checked a tag just before this load moved it can still delete it; re-apply."""
    for _ in range(rounds):
        lost = [tag for tag, named in lifecycle.pointed(tags).items() if named != image_id]
        if not lost:
            return
        for tag in lost:
            log.warning("%s: %s no longer named %s (a concurrent prune): tagging it again", lifecycle.url, tag,
                        image_id[:19])
            lifecycle.point(tag, Version(image_id, "", ()))
    raise RetentionError(f"{lifecycle.url}: tags {', '.join(tags)} keep losing {image_id[:19]} to concurrent prunes")


def make_room(lifecycle: Lifecycle, repos: Sequence[str], needed: int, keep_last: int, *, protect: set[str],
              dry_run: bool, log: logging.Logger) -> list[PruneReport]:
    """Check the target has ``needed`` bytes free; if not, prune ``repos`` first and check again."""
    found = lifecycle.free_space()
    if found is None or not needed:
        log.info("%s: free space not checked (%s)", lifecycle.url,
                 "the target does not report it" if found is None else "the source's size is unknown")
        return []
    free, where = found
    if free >= needed:
        log.info("%s: the load needs about %s, found %s free in %s", lifecycle.url, human(needed), human(free), where)
        return []
    room = max(1, keep_last - 1)  # the version about to load will be one of the keep_last
    log.warning("%s: the load needs about %s, found only %s free in %s: pruning %s to %d version(s) first",
                lifecycle.url, human(needed), human(free), where, ", ".join(repos) or "nothing", room)
    reports = [prune(lifecycle, repo, room, protect=protect, dry_run=dry_run, log=log) for repo in repos]
    after = lifecycle.free_space()
    free = after[0] if after else free
    freed = sum(r.freed_bytes for r in reports)
    if free < needed:
        raise DestinationError(f"{lifecycle.url}: not enough space for the load: needs about {human(needed)}, "
                               f"{where} has {human(free)} free after pruning {', '.join(repos) or 'nothing'} to "
                               f"{room} version(s) (freed {human(freed)}{'; dry run: nothing removed' if dry_run else ''})")
    log.info("%s: after pruning (freed %s): needs about %s, found %s free in %s", lifecycle.url, human(freed),
             human(needed), human(free), where)
    return reports


def _describe(version: Version) -> dict[str, Any]:
    return {"image_id": version.image_id, "loaded_at": version.loaded_at, "names": list(version.names),
            "size": version.size}


__all__ = [
    "LOADED_AT_LABEL", "Lifecycle", "PruneReport", "RetentionError", "Version", "decide", "load_and_retain",
    "marker_tag", "marker_time", "now", "previous_version", "prune", "repositories", "repository_of", "rollback",
]
