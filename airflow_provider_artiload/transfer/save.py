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
from collections.abc import Callable, Iterator
from typing import Any

from airflow_provider_artiload.artifacts import DockerArchive
from airflow_provider_artiload.engine.client import EngineClient
from airflow_provider_artiload.exceptions import ArchiveError
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


def save_source(source: Source, path: Destination, log: logging.Logger) -> DockerArchive:
    """The same as :func:`save_image`, for an image read out of a source (a containerd node's content store)."""
    info = source.info()
    [image_id] = info.expected_ids
    return _save(lambda: source.open(), image_id, info.size, info.label, path, log)


def _save(open_stream: Callable[[], Any], image_id: str, size: int | None, label: str, path: Destination,
          log: logging.Logger) -> DockerArchive:
    if str(path).endswith("/"):
        path = child(path, image_id.split(":", 1)[-1] + ".tar")
    if exists(path) and (reused := _verify_existing(path, image_id, log)):
        return reused
    with archive_sink(path, f"Saving {label}", log, size=size) as sink, open_stream() as chunks:
        archive = VerifiedArchive(chunks, where=f"archive of {label}", expected_ids={image_id})
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
