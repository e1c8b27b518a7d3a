"""containerd's content store: blob info, resumable verified writes, streamed reads.

A write is a bidirectional ``Content.Write`` stream keyed by a ``ref`` (use a
stable one per blob, e.g. ``artiload-sha256:<hex>``, so a retry finds the
bytes an interrupted attempt left). The stream opens with a STAT that takes
containerd's lock on the ref and reports the offset it already holds; the
data then goes from that offset, in 1 MiB messages, and the COMMIT carries the
expected digest and size so containerd verifies them before the blob exists.

The caller gives ``open_at(offset)``: an iterable of the blob's bytes from
that offset. A file seeks; a one-pass stream can use :func:`skip`, which
reads and drops the first ``offset`` bytes (no resend, only a re-read).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import grpc
from google.protobuf import field_mask_pb2

from airflow_provider_artiload.containerd._proto import content_pb2, content_pb2_grpc
from airflow_provider_artiload.containerd.connection import Connection
from airflow_provider_artiload.containerd.errors import ContainerdError
from airflow_provider_artiload.exceptions import ArchiveError, ArtiloadError
from airflow_provider_artiload.oci.verify import refused
from airflow_provider_artiload.transport.grpc import status_code

CHUNK = 1 << 20
LOCK_WAIT = 120.0  # another writer (a concurrent load of the same layer) holds the ref
UNCOMPRESSED_LABEL = "containerd.io/uncompressed"


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WriteStatus:
    """An unfinished write: ``offset`` bytes are on the node already."""

    ref: str
    offset: int
    total: int
    expected: str


class ContentStore:
    """The content service (containerd's ``client.ContentStore()``): blobs by digest, writes by ref."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def info(self, digest: str) -> BlobInfo | None:
        request = content_pb2.InfoRequest(digest=digest)
        reply = self.connection.call_or_none(content_pb2_grpc.ContentStub, "Info", request, f"Content.Info {digest}")
        return None if reply is None else BlobInfo(reply.info.digest, reply.info.size, dict(reply.info.labels))

    def status(self, ref: str) -> WriteStatus | None:
        request = content_pb2.StatusRequest(ref=ref)
        reply = self.connection.call_or_none(content_pb2_grpc.ContentStub, "Status", request, f"Content.Status {ref}")
        if reply is None:
            return None
        s = reply.status
        return WriteStatus(s.ref, s.offset, s.total, s.expected)

    def abort(self, ref: str) -> bool:
        """Drop an unfinished write and its bytes; False if there was none."""
        request = content_pb2.AbortRequest(ref=ref)
        return self.connection.call_or_none(content_pb2_grpc.ContentStub, "Abort", request, f"Content.Abort {ref}") is not None

    def delete(self, digest: str) -> bool:
        request = content_pb2.DeleteContentRequest(digest=digest)
        return self.connection.call_or_none(content_pb2_grpc.ContentStub, "Delete", request, f"Content.Delete {digest}") is not None

    def set_labels(self, digest: str, labels: Mapping[str, str]) -> BlobInfo:
        """Set (only) these labels on a blob, leaving its others alone: GC references, uncompressed digests."""
        info = content_pb2.Info(digest=digest, labels=dict(labels))
        mask = field_mask_pb2.FieldMask(paths=[f"labels.{key}" for key in labels])
        request = content_pb2.UpdateRequest(info=info, update_mask=mask)
        reply = self.connection.call(content_pb2_grpc.ContentStub, "Update", request, f"Content.Update {digest}")
        return BlobInfo(reply.info.digest, reply.info.size, dict(reply.info.labels))

    def read(self, digest: str, offset: int = 0) -> Iterator[bytes]:
        """The blob's bytes from ``offset``, as containerd streams them (about 1 MiB per message)."""
        request = content_pb2.ReadContentRequest(digest=digest, offset=offset)
        call = content_pb2_grpc.ContentStub(self.connection.channel).Read(request, metadata=self.connection.metadata())
        started = False
        try:
            for reply in call:
                started = True
                yield reply.data
        except grpc.RpcError as exc:
            raise self.connection.error(exc, f"Content.Read {digest}", started=started) from exc
        finally:
            call.cancel()

    def write(
        self,
        ref: str,
        digest: str,
        size: int,
        open_at: Callable[[int], Iterable[bytes]],
        labels: Mapping[str, str] | None = None,
    ) -> int:
        """Write a blob unless the node has it; return the data bytes sent (0 if it was there).

        Raises DigestMismatch (and drops the partial write) when the bytes do not
        match ``digest``/``size``; on a broken connection the bytes so far stay
        under ``ref`` for the next attempt.
        """
        if size < 0 or not digest.startswith("sha256:"):
            raise ArchiveError(f"cannot write blob {digest!r} of size {size}: expected a sha256 digest and a size >= 0")
        deadline = time.monotonic() + LOCK_WAIT
        with self.ref_lock(ref):
            while True:
                try:
                    return _write_once(self, ref, digest, size, open_at, dict(labels or {}))
                except ContainerdError as exc:
                    if exc.code != "UNAVAILABLE" or time.monotonic() > deadline:
                        raise
                time.sleep(0.2)  # the ref is locked by another writer: when it is done, STAT says AlreadyExists

    @contextlib.contextmanager
    def ref_lock(self, ref: str) -> Iterator[None]:
        """One writer per (node, namespace, ref) in this process.

        containerd locks a ref itself and answers a second writer UNAVAILABLE;
        waiting here instead spares that writer its retry loop, and its STAT
        then finds the blob and sends nothing. (A blob held by no lease and no
        image is collected within 0.1 s of its lease's end on 1.6: a writer that
        comes after that rightly sends it again.)
        """
        key = (self.connection.where, self.connection.namespace, ref)
        with _REF_LOCKS_GUARD:
            lock = _REF_LOCKS.setdefault(key, threading.Lock())
        with lock:  # kept, not popped: one small lock per blob ref this process ever wrote
            yield


_REF_LOCKS: dict[tuple[str, str, str], threading.Lock] = {}
_REF_LOCKS_GUARD = threading.Lock()


def manifest_gc_labels(config_digest: str, layer_digests: Iterable[str]) -> dict[str, str]:
    """The labels a manifest blob needs so GC keeps its config and layers (as ``ctr images import`` sets)."""
    labels = {"containerd.io/gc.ref.content.config": config_digest}
    labels.update({f"containerd.io/gc.ref.content.l.{i}": d for i, d in enumerate(layer_digests)})
    return labels


def skip(chunks: Iterable[bytes], offset: int) -> Iterator[bytes]:
    """``chunks`` without their first ``offset`` bytes: resuming from a source that cannot seek."""
    for chunk in chunks:
        if offset >= len(chunk):
            offset -= len(chunk)
            continue
        yield memoryview(chunk)[offset:] if offset else chunk
        offset = 0


class _Writer:
    """The request side of one Write stream, run by grpcio's sender thread."""

    def __init__(self, ref: str, digest: str, size: int, open_at: Callable[[int], Iterable[bytes]], labels: dict[str, str]) -> None:
        self.ref, self.digest, self.size, self.open_at, self.labels = ref, digest, size, open_at, labels
        self.resume_at: int | None = None
        self.go = threading.Event()
        self.sent = 0
        self.error: BaseException | None = None

    def requests(self) -> Iterator[content_pb2.WriteContentRequest]:
        yield content_pb2.WriteContentRequest(action=content_pb2.STAT, ref=self.ref, total=self.size, expected=self.digest)
        self.go.wait()
        if self.resume_at is None:
            return
        offset = self.resume_at
        try:
            if offset < self.size:
                for piece in _rechunk(self.open_at(offset)):
                    if offset + len(piece) > self.size:
                        raise ArchiveError(f"blob {self.digest} is longer than its size {self.size}")
                    yield content_pb2.WriteContentRequest(action=content_pb2.WRITE, ref=self.ref, offset=offset, data=piece)
                    offset += len(piece)
                    self.sent += len(piece)
            if offset != self.size:
                raise ArchiveError(f"blob {self.digest} ended after {offset} of its {self.size} bytes")
        except GeneratorExit:  # grpcio closing the request stream after the call ended: not a source error
            raise
        except BaseException as exc:  # noqa: BLE001 - re-raised by ContentStore.write on the caller's thread
            self.error = exc
            return  # half-close without COMMIT: containerd keeps the bytes so far under the ref
        yield content_pb2.WriteContentRequest(
            action=content_pb2.COMMIT, ref=self.ref, offset=offset, total=self.size, expected=self.digest, labels=self.labels
        )


def _write_once(
    store: ContentStore, ref: str, digest: str, size: int, open_at: Callable[[int], Iterable[bytes]], labels: dict[str, str]
) -> int:
    writer = _Writer(ref, digest, size, open_at, labels)
    what = f"writing blob {digest} (ref {ref})"
    connection = store.connection
    call = content_pb2_grpc.ContentStub(connection.channel).Write(writer.requests(), metadata=connection.metadata())
    committed = False
    try:
        first = next(call)
        if first.offset > size:  # a stale write under this ref with other data: start over
            store.abort(ref)
            raise ContainerdError(f"{what}: stale partial write of {first.offset} bytes dropped", code="UNAVAILABLE")
        writer.resume_at = first.offset
        writer.go.set()
        for reply in call:
            committed = committed or reply.action == content_pb2.COMMIT
    except grpc.RpcError as exc:
        writer.go.set()
        code = status_code(exc)
        if code == grpc.StatusCode.ALREADY_EXISTS:
            return writer.sent  # someone (maybe us, before a cut) finished it
        if code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT) and "unexpected" in (exc.details() or ""):
            store.abort(ref)  # the bytes are wrong: never resume from them
            raise refused(f"containerd at {connection.where}", "a blob", digest, exc.details() or "corrupt") from exc
        if writer.error is not None:
            raise _source_error(writer.error, what) from writer.error
        raise connection.error(exc, what, started=writer.sent > 0) from exc
    except StopIteration:
        raise ContainerdError(f"containerd at {connection.where}: {what}: the stream ended before the first reply") from None
    finally:
        writer.go.set()
        call.cancel()
    if writer.error is not None:
        raise _source_error(writer.error, what) from writer.error
    if not committed:
        raise ContainerdError(f"containerd at {connection.where}: {what}: the stream ended without a commit")
    return writer.sent


def _source_error(exc: BaseException, what: str) -> BaseException:
    return exc if isinstance(exc, ArtiloadError) else ArchiveError(f"{what}: reading the blob failed: {exc}")


def _rechunk(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Messages of at most CHUNK bytes: big chunks are sliced, small ones gathered."""
    pending = bytearray()
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        if not pending and len(view) == CHUNK:
            yield bytes(view)
            continue
        while view:
            room = CHUNK - len(pending)
            pending += view[:room]
            view = view[room:]
            if len(pending) == CHUNK:
                yield bytes(pending)
                pending.clear()
    if pending:
        yield bytes(pending)


__all__ = ["BlobInfo", "ContentStore", "UNCOMPRESSED_LABEL", "WriteStatus", "manifest_gc_labels", "skip"]
