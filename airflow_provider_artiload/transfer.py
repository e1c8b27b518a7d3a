"""Save images to tarballs, and load one source into one or many engines.

For each target engine the load is one of:
- ``skipped``: it has the image already; only the tags are applied;
- ``delta``: a thin archive without the bottom layers it already has (classic
  image store only: an engine on the containerd store gets the full archive);
- ``full``: the whole archive.
Targets stream concurrently (``max_parallel`` at a time) from one read of the
source; a thin load the engine rejects is retried as a full load. Tags are
applied only once the engine holds the expected image ID.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from airflow_provider_artiload.artifacts import DockerArchive, LoadOutcome
from airflow_provider_artiload.engine.archive import ArchiveIndex, ArchiveScanner, Expect
from airflow_provider_artiload.engine.client import EngineClient
from airflow_provider_artiload.engine.layers import layer_position, layers_present, uses_containerd_store
from airflow_provider_artiload.engine.reference import is_image_id, parse_reference
from airflow_provider_artiload.exceptions import ArchiveError, ArtiloadError, EngineError, ImageNotFound
from airflow_provider_artiload.fanout import Fanout
from airflow_provider_artiload.progress import Progress
from airflow_provider_artiload.sources import EngineSource, FileSource, SourceInfo
from airflow_provider_artiload.storage import Target, atomic_file, child, exists, read_chunks
from airflow_provider_artiload.verify import VerifiedArchive

Source = FileSource | EngineSource


@dataclass(frozen=True)
class LoadOptions:
    tags: tuple[str, ...] = ()
    skip_existing: bool = True
    delta: bool = True
    max_parallel: int = 4


@dataclass
class _Plan:
    client: EngineClient
    mode: str  # skipped | delta | full (| failed: could not even plan)
    have: int = 0  # bottom layers the engine holds: left out (delta), or skipped unread by the engine (full)
    omit: frozenset[str] = field(default_factory=frozenset)


def save_image(client: EngineClient, image: str, path: Target, log: logging.Logger) -> DockerArchive:
    """Stream ``image`` into a docker-archive at ``path``; complete or absent.

    A ``path`` ending in ``/`` is a directory: the file is named after the
    image ID there (content-addressed). A complete archive of the same image
    already at the path is verified and reused, not rewritten (retries,
    backfills).
    """
    inspect = client.inspect_image(image)
    image_id = inspect["Id"]
    if str(path).endswith("/"):
        path = child(path, image_id.split(":", 1)[-1] + ".tar")
    layers = list(inspect.get("RootFS", {}).get("Layers") or [])
    if exists(path) and (reused := _verify_existing(path, image_id, layers, log)):
        return reused
    name = image_id if is_image_id(image) or image_id.startswith(image) else image
    progress = Progress(log, f"Saving {image} from {client.url} to {path}", total=inspect.get("Size"))
    with atomic_file(path, expected_size=inspect.get("Size")) as out, client.export_image(name) as chunks:
        archive = VerifiedArchive(chunks, where=f"archive of {image} from {client.url}", expected_image_id=image_id)

        def write_all(pieces: Iterator[bytes]) -> None:
            for piece in pieces:
                out.write(piece)
                progress.add(len(piece))

        # receiving (and checking) in one thread, hashing and writing in this one: they overlap
        [result] = Fanout(archive).run([write_all])
        if isinstance(result, BaseException):
            raise result
        out.commit()
    progress.finish()
    assert archive.index is not None
    return DockerArchive(
        path=str(path), sha256=out.sha256, size=out.size, image_id=image_id, repo_tags=archive.index.repo_tags, layers=layers
    )


def _verify_existing(path: Target, image_id: str, layers: list[str], log: logging.Logger) -> DockerArchive | None:
    """The artifact of a complete archive of ``image_id`` at ``path``, or None if it must be rewritten."""
    digest, size = hashlib.sha256(), 0
    archive = VerifiedArchive(read_chunks(path), where=str(path), expected_image_id=image_id)
    try:
        for chunk in archive:
            digest.update(chunk)
            size += len(chunk)
    except ArchiveError as exc:
        log.warning("%s exists but is not a complete archive of %s (%s): rewriting it", path, image_id, exc)
        return None
    assert archive.index is not None
    log.info("%s already holds %s, verified: not rewritten", path, image_id)
    return DockerArchive(
        path=str(path),
        sha256="sha256:" + digest.hexdigest(),
        size=size,
        image_id=image_id,
        repo_tags=archive.index.repo_tags,
        layers=layers,
    )


def load(source: Source, clients: Sequence[EngineClient], options: LoadOptions, log: logging.Logger) -> list[LoadOutcome]:
    """Load ``source`` into every engine in ``clients``; raise after all finished if any failed."""
    for tag in options.tags:
        parse_reference(tag)  # a bad tag fails before any byte moves
    info = source.info()
    plans: list[_Plan] = []
    outcomes: dict[int, LoadOutcome | BaseException] = {}
    for i, client in enumerate(clients):
        try:
            plans.append(_plan(client, info, options, log))
        except ArtiloadError as exc:  # unreachable: the other engines still get their load
            plans.append(_Plan(client, "failed"))
            outcomes[i] = exc
    for i, plan in enumerate(plans):
        if plan.mode == "skipped":
            outcomes[i] = _finish(plan, info.image_id or "", options, log, sent=0, seconds=0.0, layers=(0, len(info.diff_ids)))
    streaming = [i for i, plan in enumerate(plans) if plan.mode in ("delta", "full")]
    for start in range(0, len(streaming), max(1, options.max_parallel)):
        batch = streaming[start : start + max(1, options.max_parallel)]
        outcomes.update(zip(batch, _stream(source, info, [plans[i] for i in batch], options, log)))
    failures = [(plans[i].client.url, o) for i, o in sorted(outcomes.items()) if isinstance(o, BaseException)]
    if failures:
        if len(clients) == 1:
            raise failures[0][1]
        done = [o for o in outcomes.values() if isinstance(o, LoadOutcome)]
        for outcome in done:
            log.info("%s: %s load succeeded", outcome.engine, outcome.mode)
        raise ArtiloadError(
            f"load of {info.label} failed on {len(failures)} of {len(clients)} engines: "
            + "; ".join(f"{url}: {error}" for url, error in failures)
        )
    return [outcomes[i] for i in range(len(plans))]  # type: ignore[misc]


def _plan(client: EngineClient, info: SourceInfo, options: LoadOptions, log: logging.Logger) -> _Plan:
    if options.skip_existing and info.image_id and _has_image(client, info.image_id):
        log.info("%s already has %s: no layer bytes sent", client.url, info.image_id)
        return _Plan(client, "skipped")
    if not info.diff_ids or info.compressed:  # a gzip stream cannot be thinned member by member
        return _Plan(client, "full", have=layers_present(client, info.diff_ids) if info.diff_ids else 0)
    if uses_containerd_store(client.info()):
        log.info("%s uses the containerd image store: sending the full archive", client.url)
        return _Plan(client, "full", have=len(info.diff_ids))  # what it skips unread is unknown: check every layer
    have = layers_present(client, info.diff_ids)
    if not (options.delta and have):
        return _Plan(client, "full", have=have)
    names = info.layer_names or []
    omit = frozenset(names[:have]) - frozenset(names[have:])
    log.info("%s has %d of %d layers: sending the other %d", client.url, have, len(info.diff_ids), len(info.diff_ids) - have)
    return _Plan(client, "delta", have=have, omit=omit)


def _stream(source: Source, info: SourceInfo, plans: list[_Plan], options: LoadOptions, log: logging.Logger) -> list[LoadOutcome | BaseException]:
    """One read of the source, fanned out to every plan in the batch; thin loads that fail are redone in full."""
    omit_everywhere = frozenset.intersection(*(p.omit for p in plans)) if all(p.omit for p in plans) else frozenset()
    counters = [0] * len(plans)
    started = time.monotonic()
    with source.open(omit_everywhere) as chunks:
        archive = VerifiedArchive(
            chunks,
            where=info.label,
            expected_sha256=None if omit_everywhere else info.sha256,
            expect=_expect(info, {p for plan in plans if plan.mode == "full" for p in range(plan.have)}),
            expected_image_id=info.image_id,
            omitted=omit_everywhere,
        )
        progress = Progress(log, f"Loading {info.label} into {_names(plans)}", total=info.size)
        results = Fanout(_counted(archive, progress)).run([_uploader(p, info, counters, i) for i, p in enumerate(plans)])
    progress.finish()
    image_id = archive.index.image_ids()[0] if archive.index else info.image_id or ""
    outcomes: list[LoadOutcome | BaseException] = []
    for i, (plan, result) in enumerate(zip(plans, results)):
        layers = (plan.have, len(info.diff_ids)) if plan.mode == "delta" else (0, len(info.diff_ids))
        if isinstance(result, BaseException) or not _has_image(plan.client, image_id):
            if plan.mode != "delta" or isinstance(result, ArchiveError):  # a bad source: no retry helps
                outcomes.append(result if isinstance(result, BaseException) else _missing(plan, image_id))
                continue
            log.warning("%s: thin load failed (%s); falling back to a full load", plan.client.url, result or "image missing")
            full = _Plan(plan.client, "full", have=plan.have)
            outcomes.extend(_stream(source, info, [full], options, log))
            continue
        outcomes.append(_finish(plan, image_id, options, log, sent=counters[i], seconds=time.monotonic() - started, layers=layers))
    return outcomes


def _uploader(plan: _Plan, info: SourceInfo, counters: list[int], i: int) -> Callable[[Iterator[bytes]], object]:
    def upload(chunks: Iterator[bytes]) -> object:
        def counted() -> Iterator[bytes]:
            for piece in _filter(chunks, plan, info):
                counters[i] += len(piece)
                yield piece

        return plan.client.load_image(counted())

    return upload


def _filter(chunks: Iterable[bytes], plan: _Plan, info: SourceInfo) -> Iterator[bytes]:
    """Leave out the bottom layers the target has (by name when the file was indexed, else as identified)."""
    if plan.mode != "delta":
        yield from chunks
        return

    def keep(name: str, index: ArchiveIndex) -> bool:
        if info.layer_names:
            return name not in plan.omit
        position = layer_position(name, index, info.diff_ids)
        return position is None or position >= plan.have

    scanner = ArchiveScanner(keep=keep)
    for chunk in chunks:
        yield from (piece for piece in scanner.feed(chunk) if piece)
    scanner.finish()


def _expect(info: SourceInfo, positions: set[int]) -> Expect | None:
    """The diff ID each passing layer must hash to, for the layers at ``positions``.

    Those are the layers a target engine already holds: it skips them without
    reading, so a corrupt copy would go unnoticed. Every other layer is
    registered by the engine, which checks its diff ID itself (hashing it
    twice would halve the throughput on CPUs without SHA extensions).
    """
    if not info.diff_ids or not positions:
        return None
    wanted = {info.diff_ids[p] for p in positions}
    if info.layer_names:
        by_name = {name: d for name, d in zip(info.layer_names, info.diff_ids) if d in wanted}
        return lambda name, index: by_name.get(name)

    def expect(name: str, index: ArchiveIndex) -> str | None:
        position = layer_position(name, index, info.diff_ids)
        return None if position is None or position not in positions else info.diff_ids[position]

    return expect


def _finish(plan: _Plan, image_id: str, options: LoadOptions, log: logging.Logger, *, sent: int, seconds: float, layers: tuple[int, int]) -> LoadOutcome:
    for tag in options.tags:
        plan.client.tag_image(image_id, tag)
        log.info("Tagged %s as %s on %s", image_id[:19], tag, plan.client.url)
    total = layers[1]
    skipped = total if plan.mode == "skipped" else layers[0]
    return LoadOutcome(
        image_id=image_id,
        tags=list(options.tags),
        engine=plan.client.url,
        mode=plan.mode,
        bytes_sent=sent,
        seconds=round(seconds, 3),
        layers_sent=total - skipped,
        layers_skipped=skipped,
    )


def _has_image(client: EngineClient, image_id: str) -> bool:
    try:
        return client.inspect_image(image_id)["Id"] == image_id
    except ImageNotFound:
        return False


def _missing(plan: _Plan, image_id: str) -> EngineError:
    return EngineError(f"{plan.client.url}: the load reported success but the engine has no image {image_id}")


def _counted(chunks: Iterable[bytes], progress: Progress) -> Iterator[bytes]:
    for chunk in chunks:
        progress.add(len(chunk))
        yield chunk


def _names(plans: list[_Plan]) -> str:
    return ", ".join(plan.client.url for plan in plans)
