"""Save images to tarballs, and load one source into one or many engines.

Each target gets a typed plan (:mod:`airflow_provider_artiload.transfer.plan`): skip,
a thin send, or a full send. Targets stream concurrently (``max_parallel`` at
a time) from one read of the source; thin sends an engine refuses are redone
in full in a second round. Tags are applied only once the engine holds the
image under the ID its store gives it (:meth:`Image.id_for`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from airflow_provider_artiload.artifacts import DockerArchive, LoadOutcome
from airflow_provider_artiload.transfer.node.source import NodeSource
from airflow_provider_artiload.transfer.node.target import NodeLoader
from airflow_provider_artiload.oci.archive import ArchiveIndex, ArchiveScanner, Check, Expect, describe
from airflow_provider_artiload.engine.client import EngineClient
from airflow_provider_artiload.oci.layout import layer_position
from airflow_provider_artiload.oci.reference import is_image_id, parse_reference
from airflow_provider_artiload.oci.tar import build_member
from airflow_provider_artiload.exceptions import ArchiveError, ArtiloadError, DigestMismatch, EngineError
from airflow_provider_artiload.transfer.fanout import Fanout
from airflow_provider_artiload.oci.image import Image
from airflow_provider_artiload.transfer.plan import LoadOptions, Send, Skip, Unreachable, has_image, plan_target
from airflow_provider_artiload.progress import Progress
from airflow_provider_artiload.transfer.sources import EngineSource, FileSource, SourceInfo
from airflow_provider_artiload.storage import Target as Destination, atomic_file, child, exists, read_chunks
from airflow_provider_artiload.oci.verify import VerifiedArchive

__all__ = ["LoadOptions", "load", "save_image", "save_source"]
Source = FileSource | EngineSource | NodeSource


def save_image(client: EngineClient, image: str, path: Destination, log: logging.Logger) -> DockerArchive:
    """Stream ``image`` from an engine into an archive at ``path``; complete or absent.

    A ``path`` ending in ``/`` is a directory: the file is named after the
    image ID there (content-addressed). A complete archive of the same image
    already at the path is verified, layers included, and reused, not
    rewritten (retries, backfills).
    """
    inspect = client.inspect_image(image)
    image_id = inspect["Id"]
    name = image_id if is_image_id(image) or image_id.startswith(image) else image
    source = f"{image} from {client.url}"
    return _save(lambda: client.export_image(name), image_id, inspect.get("Size"), source, path, log)


def save_source(source: NodeSource, path: Destination, log: logging.Logger) -> DockerArchive:
    """The same as :func:`save_image`, for an image streamed out of a containerd node's content store."""
    info = source.info()
    [image_id] = info.expected_ids
    return _save(lambda: source.open(), image_id, info.size, info.label, path, log)


def _save(open_stream: Callable[[], Any], image_id: str, size: int | None, label: str, path: Destination,
          log: logging.Logger) -> DockerArchive:
    if str(path).endswith("/"):
        path = child(path, image_id.split(":", 1)[-1] + ".tar")
    if exists(path) and (reused := _verify_existing(path, image_id, log)):
        return reused
    progress = Progress(log, f"Saving {label} to {path}", total=size)
    with atomic_file(path, expected_size=size) as out, open_stream() as chunks:
        archive = VerifiedArchive(chunks, where=f"archive of {label}", expected_ids={image_id})

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
    return DockerArchive(path=str(path), sha256=out.sha256, size=out.size, image_id=image_id, **describe(archive.index))


def _verify_existing(path: Destination, image_id: str, log: logging.Logger) -> DockerArchive | None:
    """The artifact of a complete, intact archive of ``image_id`` at ``path``, or None if it must be rewritten."""
    whole, size = hashlib.sha256(), 0
    archive = VerifiedArchive(read_chunks(path), where=str(path), expect=_every_member, expected_ids={image_id})
    try:
        for chunk in archive:
            whole.update(chunk)
            size += len(chunk)
        assert archive.index is not None and archive.image is not None
        _check_layers(archive.index, archive.image)
    except ArchiveError as exc:
        log.warning("%s exists but is not an intact archive of %s (%s): rewriting it", path, image_id, exc)
        return None
    log.info("%s already holds %s, verified with every layer: not rewritten", path, image_id)
    sha256 = "sha256:" + whole.hexdigest()
    return DockerArchive(path=str(path), sha256=sha256, size=size, image_id=image_id, **describe(archive.index))


def _every_member(name: str, index: ArchiveIndex) -> Check:
    """Hash every member: a blob against the digest its name says, and each one uncompressed too."""
    digest = "sha256:" + name.rsplit("/", 1)[-1] if name.startswith("blobs/sha256/") else None
    return Check(digest=digest, inflate=True, what="blob")


def _check_layers(index: ArchiveIndex, image: Image) -> None:
    """After a full read with :func:`_every_member`: each layer's uncompressed digest against its diff ID."""
    for layer in image.layers:
        path = layer.path or ""
        member = index.members.get(index.links.get(path, path))
        if member is None or member.diff_id != layer.diff_id:
            raise DigestMismatch(
                f"layer {path} has sha256 {member.diff_id if member else None} uncompressed, "
                f"but the image config says its diff ID is {layer.diff_id} (corrupt layer)"
            )


LoadTarget = EngineClient | NodeLoader  # a Docker Engine, or a containerd node (k3s, Kubernetes, nerdctl hosts)


def load(source: Source, clients: Sequence[LoadTarget], options: LoadOptions, log: logging.Logger) -> list[LoadOutcome]:
    """Load ``source`` into every engine or node in ``clients``; raise after all finished if any failed."""
    for tag in options.tags:
        parse_reference(tag)  # a bad tag fails before any byte moves
    info = source.info()
    plans = [_plan(client, info, options, log) for client in clients]
    outcomes: dict[int, LoadOutcome | BaseException] = {}
    for i, plan in enumerate(plans):
        if isinstance(plan, Unreachable):
            outcomes[i] = plan.error
        elif isinstance(plan, Skip):
            outcomes[i] = _finish(plan.client, plan.image_id, "skipped", options, log, sent=0, seconds=0.0,
                                  layers=(len(info.diff_ids), len(info.diff_ids)), archive_tags=[])
    pending = [(i, plan) for i, plan in enumerate(plans) if isinstance(plan, Send)]
    step = max(1, options.max_parallel)
    while pending:
        retry: list[tuple[int, Send]] = []
        for start in range(0, len(pending), step):
            batch = pending[start : start + step]
            for (i, send), result in zip(batch, _stream(source, info, [s for _, s in batch], options, log)):
                if isinstance(result, _Refused):
                    log.warning("%s: thin load failed (%s); falling back to a full load", send.client.url, result.reason)
                    retry.append((i, result.fallback))
                else:
                    outcomes[i] = result
        pending = retry
    return _gather(info, clients, plans, outcomes, log)


def _plan(client: LoadTarget, info: SourceInfo, options: LoadOptions, log: logging.Logger):
    if isinstance(client, NodeLoader):
        return client.plan(info, options, log)  # it asks the node's content store which blobs it lacks
    return plan_target(client, info, options, log)


def _gather(info: SourceInfo, clients: Sequence[EngineClient], plans: list, outcomes: dict, log: logging.Logger) -> list[LoadOutcome]:
    failures = [(plans[i].client.url, o) for i, o in sorted(outcomes.items()) if isinstance(o, BaseException)]
    if failures:
        if len(clients) == 1:
            raise failures[0][1]
        for outcome in outcomes.values():
            if isinstance(outcome, LoadOutcome):
                log.info("%s: %s load succeeded", outcome.engine, outcome.mode)
        raise ArtiloadError(
            f"load of {info.label} failed on {len(failures)} of {len(clients)} engines: "
            + "; ".join(f"{url}: {error}" for url, error in failures)
        )
    return [outcomes[i] for i in range(len(plans))]


class _Refused:
    """A thin send the engine did not turn into the image: redo it in full."""

    def __init__(self, fallback: Send, reason: str) -> None:
        self.fallback = fallback
        self.reason = reason


def _stream(source: Source, info: SourceInfo, sends: list[Send], options: LoadOptions, log: logging.Logger) -> list:
    """One read of the source, fanned out to every send in the batch."""
    omit_everywhere = frozenset.intersection(*(s.omit for s in sends)) if all(s.omit for s in sends) else frozenset()
    counters = [0] * len(sends)
    started = time.monotonic()
    with source.open(omit_everywhere) as chunks:
        archive = VerifiedArchive(
            chunks,
            where=info.label,
            expected_sha256=None if omit_everywhere else info.sha256,
            expect=_expect(info, _unchecked_layers(info, sends)),
            expected_ids=info.expected_ids,
            omitted=frozenset(n for n in omit_everywhere if not n.startswith("#")),
            platform=options.platform,
        )
        progress = Progress(log, f"Loading {info.label} into {', '.join(s.client.url for s in sends)}", total=info.size)
        results = Fanout(_counted(archive, progress)).run(
            [_uploader(s, info, options, counters, i) for i, s in enumerate(sends)]
        )
    image = archive.image
    outcomes: list = []
    for i, (send, result) in enumerate(zip(sends, results)):
        if isinstance(send.client, NodeLoader):  # it verified, recorded and tagged the image itself
            outcomes.append(result)
            continue
        target_id = image.id_for(send.store) if image else None
        ok = not isinstance(result, BaseException) and target_id and has_image(send.client, target_id)
        if ok:
            layers = (send.have if send.omit else 0, len(info.diff_ids) or len(image.layers))
            outcomes.append(_finish(send.client, target_id, send.mode, options, log, sent=counters[i],
                                    seconds=time.monotonic() - started, layers=layers, archive_tags=list(image.repo_tags)))
        elif send.fallback() is not None and not isinstance(result, ArchiveError):
            outcomes.append(_Refused(send.fallback(), str(result or "the image is missing afterwards")))
        else:
            outcomes.append(result if isinstance(result, BaseException) else _missing(send.client, target_id))
    progress.finish()
    return outcomes


def _uploader(send: Send, info: SourceInfo, options: LoadOptions, counters: list[int], i: int) -> Callable[[Iterator[bytes]], object]:
    if isinstance(send.client, NodeLoader):
        loader, log = send.client, logging.getLogger(__name__)
        return lambda chunks: loader.load(chunks, info, options, log)

    def upload(chunks: Iterator[bytes]) -> object:
        def counted() -> Iterator[bytes]:
            for piece in _filter(chunks, send, info, options):
                counters[i] += len(piece)
                yield piece

        return send.client.load_image(counted())

    return upload


def _filter(chunks: Iterable[bytes], send: Send, info: SourceInfo, options: LoadOptions) -> Iterator[bytes]:
    """Leave out the blobs the target has; add a manifest.json for an engine that needs one."""
    if not send.omit and not send.add_manifest:
        yield from chunks
        return

    def keep(name: str, index: ArchiveIndex) -> bool:
        if not send.omit:
            return True
        if info.layer_names is not None:
            return name not in send.omit
        position = layer_position(name, index, info.diff_ids)
        return position is None or position >= send.have

    def manifest(index: ArchiveIndex) -> bytes:
        if not send.add_manifest or "manifest.json" in index.members:
            return b""
        return build_member("manifest.json", index.image(options.platform).legacy_manifest())

    scanner = ArchiveScanner(keep=keep, at_end=manifest)
    for chunk in chunks:
        yield from (piece for piece in scanner.feed(chunk) if piece)
    yield from (piece for piece in scanner.end_pieces() if piece)
    scanner.finish()


def _unchecked_layers(info: SourceInfo, sends: list[Send]) -> set[int]:
    """The layer positions some target will not check before it records the image.

    A classic-store engine skips the layers it holds unread (full sends); the
    containerd store records the image (and the archive's own tags) before it
    unpacks, so a bad layer there leaves a broken image: check all its layers.
    """
    positions: set[int] = set()
    for send in sends:
        if isinstance(send.client, NodeLoader):
            continue  # a node verifies every blob it writes, by digest, before it records the image
        if send.store == "containerd":
            positions.update(range(len(info.diff_ids)))
        elif not send.omit:
            positions.update(range(send.have))
    return positions


def _expect(info: SourceInfo, positions: set[int]) -> Expect | None:
    """What each passing layer at ``positions`` must hash to: the layers a target holds and skips unread.

    Every other layer is registered by the engine, which checks it itself
    (hashing it twice would halve the throughput on CPUs without SHA extensions).
    """
    if not info.diff_ids or not positions:
        return None
    if info.image is not None:
        by_name = {
            layer.path: Check(digest=layer.digest if (layer.path or "").startswith("blobs/") else None, diff_id=layer.diff_id)
            for p, layer in enumerate(info.image.layers)
            if p in positions
        }
        return lambda name, index: by_name.get(name)

    def expect(name: str, index: ArchiveIndex) -> Check | None:
        position = layer_position(name, index, info.diff_ids)
        if position is None or position not in positions:
            return None
        return Check(diff_id=info.diff_ids[position])

    return expect


def _finish(client: EngineClient, image_id: str, mode: str, options: LoadOptions, log: logging.Logger, *,
            sent: int, seconds: float, layers: tuple[int, int], archive_tags: list[str]) -> LoadOutcome:
    for tag in options.tags:
        client.tag_image(image_id, tag)
        log.info("Tagged %s as %s on %s", image_id[:19], tag, client.url)
    skipped, total = layers
    if archive_tags:
        log.info("%s: the archive itself tagged the image %s", client.url, ", ".join(archive_tags))
    return LoadOutcome(
        image_id=image_id,
        tags=list(options.tags),
        engine=client.url,
        mode=mode,
        bytes_sent=sent,
        seconds=round(seconds, 3),
        layers_sent=total - skipped,
        layers_skipped=skipped,
        archive_tags=archive_tags,
    )


def _missing(client: EngineClient, image_id: str | None) -> EngineError:
    return EngineError(f"{client.url}: the load reported success but the engine has no image {image_id}")


def _counted(chunks: Iterable[bytes], progress: Progress) -> Iterator[bytes]:
    for chunk in chunks:
        progress.add(len(chunk))
        yield chunk
