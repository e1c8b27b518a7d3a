"""Load one source into one or many targets (Docker Engines, containerd nodes).

Each target plans for itself (:meth:`~.plan.LoadTarget.plan`): skip, a thin send,
or a full send. Targets stream concurrently (``max_parallel`` at a time),
each at its own speed (:mod:`.fanout`), from one read of the source, and
each concludes as soon as its upload ends; the read is checked as it passes
(:class:`~airflow_provider_artiload.oci.verify.VerifiedArchive`, with the
layers every target's plan says it records unchecked), and no target
receives the archive's end until the checks passed. Thin sends a target
refuses are redone in full in a second round. This loop never asks what
kind a target is.
"""

from __future__ import annotations

import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterable, Iterator, Sequence
from airflow_provider_artiload.artifacts import LoadOutcome
from airflow_provider_artiload.exceptions import ArtiloadError
from airflow_provider_artiload.oci.reference import parse_reference
from airflow_provider_artiload.oci.archive import ArchiveIndex, Expect
from airflow_provider_artiload.oci.digests import Check
from airflow_provider_artiload.oci.verify import VerifiedArchive, expect_layers, merged
from airflow_provider_artiload.progress import Progress
from airflow_provider_artiload.transfer.fanout import Fanout
from airflow_provider_artiload.transfer.platforms import chosen_image, described, stream_target
from airflow_provider_artiload.transfer.sources import Source, SourceInfo
from airflow_provider_artiload.transfer.plan import (
    LoadOptions,
    LoadTarget,
    Plan,
    Refused,
    Send,
    Skip,
    Streamed,
    Unreachable,
    tagged_outcome,
)

__all__ = ["LoadOptions", "load"]

PLANNERS = 16  # targets asked for their plans at once


def load(source: Source, targets: Sequence[LoadTarget], options: LoadOptions, log: logging.Logger) -> list[LoadOutcome]:
    """Load ``source`` into every target; raise after all finished if any failed."""
    for tag in options.tags:
        parse_reference(tag)  # a bad tag fails before any byte moves
    info = source.info()
    plans = _plan_all(targets, info, options, log)
    outcomes: dict[int, LoadOutcome | BaseException] = {}
    for i, plan in enumerate(plans):
        if isinstance(plan, Unreachable):
            outcomes[i] = plan.error
        elif isinstance(plan, Skip):
            outcomes[i] = _skipped(plan, info, options, log)
    pending = [(i, plan) for i, plan in enumerate(plans) if isinstance(plan, Send)]
    step = max(1, options.max_parallel)
    while pending:
        retry: list[tuple[int, Send]] = []
        for start in range(0, len(pending), step):
            batch = pending[start : start + step]
            for (i, send), result in zip(batch, _stream(source, info, [s for _, s in batch], options, log)):
                if isinstance(result, Refused):
                    what = "thin load failed" if send.omit else "load failed"
                    log.warning("%s: %s (%s); loading again in full", send.target.url, what, result.reason)
                    retry.append((i, result.fallback))
                else:
                    outcomes[i] = result
        pending = retry
    return _gather(info, targets, plans, outcomes, log)


def _plan_all(targets: Sequence[LoadTarget], info: SourceInfo, options: LoadOptions, log: logging.Logger) -> list[Plan]:
    """Every target's plan, asked of all targets at once: each is a few API round trips to its own host."""
    if len(targets) < 2:
        return [target.plan(info, options, log) for target in targets]
    with ThreadPoolExecutor(max_workers=min(len(targets), PLANNERS), thread_name_prefix="artiload-plan") as pool:
        return list(pool.map(lambda target: target.plan(info, options, log), targets))


def _skipped(plan: Skip, info: SourceInfo, options: LoadOptions, log: logging.Logger) -> LoadOutcome | BaseException:
    info = plan.info or info  # the target's platform's image
    layers = (len(info.diff_ids), len(info.diff_ids))
    try:
        outcome = tagged_outcome(plan.target, plan.image_id, "skipped", options, log, sent=0, seconds=0.0,
                                 layers=layers, archive_tags=[])
    except ArtiloadError as exc:
        return exc
    return _reported(described(outcome, info, info.image), log)


def _reported(outcome: LoadOutcome, log: logging.Logger) -> LoadOutcome:
    """One line per target, naming its platform."""
    theirs = f" (the target is {outcome.target_platform})" if outcome.target_platform and outcome.platform and \
        outcome.target_platform != outcome.platform else ""
    log.info("%s: %s image %s, platform %s%s: %s, %d bytes sent", outcome.engine, "loaded" if outcome.mode != "skipped"
             else "has", outcome.manifest_digest or outcome.image_id, outcome.platform or "unknown", theirs, outcome.mode,
             outcome.bytes_sent)
    return outcome


def _gather(info: SourceInfo, targets: Sequence[LoadTarget], plans: list[Plan], outcomes: dict,
            log: logging.Logger) -> list[LoadOutcome]:
    failures = [(plans[i].target.url, o) for i, o in sorted(outcomes.items()) if isinstance(o, BaseException)]
    if failures:
        if len(targets) == 1:
            raise failures[0][1]
        for outcome in outcomes.values():
            if isinstance(outcome, LoadOutcome):
                log.info("%s: %s load succeeded", outcome.engine, outcome.mode)
        raise ArtiloadError(
            f"load of {info.label} failed on {len(failures)} of {len(targets)} engines: "
            + "; ".join(f"{url}: {error}" for url, error in failures)
        )
    return [outcomes[i] for i in range(len(plans))]


def _stream(source: Source, info: SourceInfo, sends: list[Send], options: LoadOptions,
            log: logging.Logger) -> list[LoadOutcome | Refused | BaseException]:
    """One read of the source, checked once, fanned out to every send in the batch."""
    omit_everywhere = frozenset.intersection(*(s.omit for s in sends)) if all(s.omit for s in sends) else frozenset()
    views = [send.info or info for send in sends]  # each target's platform's image (transfer/platforms.py)
    started = time.monotonic()
    with source.open(omit_everywhere) as chunks:
        archive = VerifiedArchive(
            chunks,
            where=info.label,
            expected_sha256=None if omit_everywhere else info.sha256,
            expect=_expect([expect_layers(v.image, v.diff_ids, s.unchecked, s.unchecked_blobs) for s, v in zip(sends, views)]),
            expected_ids=info.expected_ids,
            omitted=frozenset(n for n in omit_everywhere if not n.startswith("#")),
            platform=options.platform,
            plain=True,  # targets get the plain tar: the source's outer compression is removed before any check
            platforms=sorted({v.platform for v in views if v.narrowed and v.platform}),
        )
        progress = Progress(log, f"Loading {info.label} into {', '.join(s.target.url for s in sends)}", total=info.size)

        results = Fanout(_counted(archive, progress)).run([
            lambda chunks, send=send, view=view: _deliver(chunks, send, view, archive, started, options, log)
            for send, view in zip(sends, views)
        ])
    progress.finish()
    return results


def _deliver(chunks: Iterator[bytes], send: Send, view: SourceInfo, archive: VerifiedArchive, started: float,
             options: LoadOptions, log: logging.Logger) -> LoadOutcome | Refused | BaseException:
    """Upload, then conclude at once: a target's ``seconds`` end when it is done, not when the slowest one is."""
    try:
        uploaded: object = send.target.upload(send, chunks, view, options, log)
    except BaseException as exc:  # noqa: BLE001 - the target decides what its failure means
        uploaded = exc
    streamed = Streamed(archive.image, time.monotonic() - started, index=archive.index)
    outcome = send.target.conclude(send, uploaded, streamed, view, options, log)
    if not isinstance(outcome, LoadOutcome):
        return outcome
    return _reported(described(outcome, view, chosen_image(view, streamed, stream_target(view, options, send.store))), log)


def _expect(expects: list[Expect | None]) -> Expect | None:
    """What a passing member must hash to for any target of the batch (each names its own platform's layers)."""
    expects = [e for e in expects if e is not None]
    if len(expects) < 2:
        return expects[0] if expects else None

    def expect(name: str, index: ArchiveIndex) -> Check | None:
        checks = [c for c in (e(name, index) for e in expects) if c is not None]
        return functools.reduce(merged, checks) if checks else None

    return expect


def _counted(chunks: Iterable[bytes], progress: Progress) -> Iterator[bytes]:
    for chunk in chunks:
        progress.add(len(chunk))
        yield chunk
