"""Save images to archives at a path: streamed, checked, complete or absent.

One pipeline for everything that writes an archive (an engine's export, a
node's content store, a BuildKit exporter): :func:`archive_sink` writes under
a temporary name, counts and hashes as it goes, and publishes the file only
once it is whole; the artifact is described from the archive as scanned.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from airflow_provider_artiload.artifacts import DockerArchive
from airflow_provider_artiload.engine.client import EngineClient
from airflow_provider_artiload.exceptions import ArchiveError, EngineError
from airflow_provider_artiload.oci.platform import Platform, best, of_descriptor
from airflow_provider_artiload.oci.platform import parse as parse_platform
from airflow_provider_artiload.oci.reference import is_image_id
from airflow_provider_artiload.oci.verify import VerifiedArchive, check_layers, every_member
from airflow_provider_artiload.progress import Progress
from airflow_provider_artiload.storage import Target as Destination
from airflow_provider_artiload.storage import atomic_file, child, exists, read_chunks
from airflow_provider_artiload.transfer.fanout import Fanout
from airflow_provider_artiload.transfer.sources import Source

__all__ = ["Sink", "archive_sink", "save_image", "save_source"]


class Sink:
    """Where an archive's bytes go: the temporary file, with progress."""

    def __init__(self, out: Any, progress: Progress) -> None:
        self.out = out
        self._progress = progress

    def write(self, piece: bytes) -> None:
        self.out.write(piece)
        self._progress.add(len(piece))

    def write_all(self, pieces: Iterator[bytes]) -> None:
        for piece in pieces:
            self.write(piece)

    @property
    def sha256(self) -> str:
        return self.out.sha256

    @property
    def size(self) -> int:
        return self.out.size


@contextlib.contextmanager
def archive_sink(path: Destination, label: str, log: logging.Logger, *, size: int | None = None) -> Iterator[Sink]:
    """Write ``path`` under a temporary name; it appears only if the block ends without an error."""
    progress = Progress(log, f"{label} to {path}", total=size)
    with atomic_file(path, expected_size=size) as out:
        yield Sink(out, progress)
        out.commit()
    progress.finish()


def save_image(client: EngineClient, image: str, path: Destination, log: logging.Logger,
               platforms: Sequence[str] = ()) -> DockerArchive:
    """Stream ``image`` from an engine into an archive at ``path``; complete or absent.

    A ``path`` ending in ``/`` is a directory: the file is named after the
    image ID there (content-addressed). A complete archive of the same image
    already at the path is verified, layers included, and reused, not
    rewritten (retries, backfills). ``platforms``: only those images of a
    multi-platform image (the Engine API's ``platform`` parameter, API 1.48+),
    each checked complete in the archive; none: what the engine saves.
    """
    inspect = client.inspect_image(image)
    image_id = inspect["Id"]
    name = image_id if is_image_id(image) or image_id.startswith(image) else image
    source = f"{image} from {client.url}"
    wanted = [parse_platform(p, what="platforms") for p in platforms]
    if wanted:
        return _save_platforms(client, name, image_id, inspect.get("Size"), source, path, log, wanted)
    return _save(lambda: client.export_image(name), image_id, inspect.get("Size"), source, path, log)


def _save_platforms(client: EngineClient, name: str, image_id: str, size: int | None, source: str, path: Destination,
                    log: logging.Logger, wanted: list[Platform]) -> DockerArchive:
    """Some platforms of a multi-platform image: one through the ``platform`` parameter (its manifest is then the
    image saved); several only when they are all the image holds, since the Engine API takes one ``platform``."""
    version = str(client.version().get("ApiVersion") or "0")
    held = _platform_manifests(client, image_id) if tuple(int(x) for x in version.split(".") if x.isdigit()) >= (1, 48) else None
    if held is None:
        raise EngineError(f"{client.url} (API {version}) cannot choose platforms when saving (API 1.48+, Docker 28 with "
                          "the containerd image store); omit platforms to save what it holds")
    have = ", ".join(str(p) for p in held) or "none"
    if str(path).endswith("/"):
        path = child(path, f"{image_id.split(':', 1)[-1]}-{'-'.join(str(p).replace('/', '_') for p in wanted)}.tar")
    if len(wanted) == 1:
        position = best(wanted[0], list(held))
        if position is None:
            raise EngineError(f"{source}: the image has no {wanted[0]} image (it has {have})")
        platform, manifest = list(held.items())[position]
        query = [{k: v for k, v in (("os", platform.os), ("architecture", platform.architecture),
                                    ("variant", platform.variant)) if v}]
        return _save(lambda: client.export_image(name, platforms=query), manifest, size, f"{source} ({platform})", path, log)
    if set(wanted) != set(held):
        raise EngineError(f"{source}: the Engine API saves one platform of an image or all of them ({have}), not "
                          f"{', '.join(str(p) for p in wanted)}: save each platform on its own, or all")
    return _save(lambda: client.export_image(name), image_id, size, source, path, log, platforms=[str(p) for p in wanted])


def _platform_manifests(client: EngineClient, image_id: str) -> dict[Platform, str]:
    """The platform images a containerd-store engine holds of ``image_id`` (``manifests=1``): platform -> manifest."""
    held: dict[Platform, str] = {}
    for manifest in client.image_manifests(image_id) or []:
        if not isinstance(manifest, dict) or manifest.get("Kind") != "image" or not manifest.get("Available", True):
            continue
        data = manifest.get("ImageData") if isinstance(manifest.get("ImageData"), dict) else {}
        descriptor = manifest.get("Descriptor") if isinstance(manifest.get("Descriptor"), dict) else {}
        platform = of_descriptor(data.get("Platform")) or of_descriptor(descriptor.get("platform"))
        if platform is not None and isinstance(manifest.get("ID"), str):
            held.setdefault(platform, manifest["ID"])
    return held


def save_source(source: Source, path: Destination, log: logging.Logger) -> DockerArchive:
    """The same as :func:`save_image`, for an image read out of a source (a containerd node's content store)."""
    info = source.info()
    [image_id] = info.expected_ids
    platforms = tuple(getattr(source, "platforms", ()) or ())  # a node's export of several: each checked whole
    return _save(lambda: source.open(), image_id, info.size, info.label, path, log, platforms=platforms)


def _save(open_stream: Callable[[], Any], image_id: str, size: int | None, label: str, path: Destination,
          log: logging.Logger, platforms: Sequence[str] = ()) -> DockerArchive:
    if str(path).endswith("/"):
        path = child(path, image_id.split(":", 1)[-1] + ".tar")
    if exists(path) and (reused := _verify_existing(path, image_id, log)):
        return reused
    with archive_sink(path, f"Saving {label}", log, size=size) as sink, open_stream() as chunks:
        # with platforms: each one's image must be whole in the archive (an engine that ignored some fails here)
        archive = VerifiedArchive(chunks, where=f"archive of {label}", expected_ids={image_id}, platforms=platforms)
        # receiving (and checking) in one thread, hashing and writing in this one: they overlap
        [result] = Fanout(archive).run([sink.write_all])
        if isinstance(result, BaseException):
            raise result
    assert archive.index is not None
    return DockerArchive.of_index(archive.index, path=str(path), sha256=sink.sha256, size=sink.size, image_id=image_id)


def _verify_existing(path: Destination, image_id: str, log: logging.Logger) -> DockerArchive | None:
    """The artifact of a complete, intact archive of ``image_id`` at ``path``, or None if it must be rewritten."""
    whole, size = hashlib.sha256(), 0
    archive = VerifiedArchive(read_chunks(path), where=str(path), expect=every_member, expected_ids={image_id})
    try:
        for chunk in archive:
            whole.update(chunk)
            size += len(chunk)
        assert archive.index is not None and archive.image is not None
        check_layers(archive.index, archive.image)
    except ArchiveError as exc:
        log.warning("%s exists but is not an intact archive of %s (%s): rewriting it", path, image_id, exc)
        return None
    log.info("%s already holds %s, verified with every layer: not rewritten", path, image_id)
    return DockerArchive.of_index(archive.index, path=str(path), sha256="sha256:" + whole.hexdigest(), size=size,
                                  image_id=image_id)
