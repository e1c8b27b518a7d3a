"""Write a blob into containerd's content store as an archive member streams past, resumably.

A load reads its archive once, so a blob cannot be re-opened at an offset
(``ContentStore.write`` pulls; this pushes). :class:`BlobStream` has two
phases, so that an interrupted load can be resumed by a later one:

1. **data**: a ``Content.Write`` stream under a deterministic ref, made
   *outside* the load's lease. containerd gives an unleased ingest a 24-hour
   expiry, so the bytes survive the failed load's lease being deleted; a
   retry's STAT reports how many it holds, and :meth:`push` sends only what
   lies beyond that offset (the earlier bytes still pass, and are hashed).
   The stream half-closes without a commit.
2. **commit**: ``ContentStore.write`` under the lease (its STAT finds the
   ingest complete and sends no data), with the digest hashed on the way
   (so even a blob whose digest was unknown at its header is verified by
   containerd) and the blob's labels. The blob then belongs to the lease.

Replies are drained by a thread (containerd answers every WRITE); requests
go through a short queue, so at most ``DEPTH`` MiB per stream is in memory.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Mapping
from typing import Any

import grpc

from airflow_provider_artiload.containerd import content
from airflow_provider_artiload.containerd._proto import content_pb2, content_pb2_grpc
from airflow_provider_artiload.containerd.content import ContentStore
from airflow_provider_artiload.containerd.errors import ContainerdError, is_lock
from airflow_provider_artiload.exceptions import ArchiveError, DigestMismatch
from airflow_provider_artiload.oci.verify import mismatch, refused
from airflow_provider_artiload.transport.grpc import status_code

DEPTH = 2
WINDOW = 4 << 20  # unacknowledged bytes in flight: what a cut can lose (grpc and SSH buffer far more)
LOCK_WAIT = content.LOCK_WAIT
_END = object()


def ref_for(digest: str | None, member: str, size: int) -> str:
    """The write ref: by digest when known, else by member name and size (a v1 ``layer.tar`` of unknown digest)."""
    key = digest or f"member-{hashlib.sha256(member.encode()).hexdigest()[:40]}-{size}"
    return f"artiload-{key}"


class BlobStream:
    """One blob, pushed piece by piece; ``sent`` counts the data bytes that went to the node."""

    def __init__(self, store: ContentStore, ref: str, size: int, digest: str | None, *, what: str) -> None:
        self.store, self.ref, self.size, self.digest, self.what = store, ref, size, digest, what
        self.connection = store.connection
        self.sent = 0
        self.resumed_at = 0  # bytes containerd held already
        self.exists = False  # the blob was committed already (by another load)
        self._hash = hashlib.sha256()
        self._position = 0
        self._requests: queue.Queue[Any] = queue.Queue(DEPTH)
        self._call: Any = None
        self._reader: threading.Thread | None = None
        self._error: BaseException | None = None
        self._pending = bytearray()
        self._next_offset = 0  # where the next WRITE goes
        self._acked = 0  # what containerd reported holding
        self._progress = threading.Condition()

    # ---------------------------------------------------------------- data phase

    def open(self) -> None:
        """STAT the ref (outside any lease); learn the offset containerd holds."""
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                self._open_once()
                return
            except grpc.RpcError as exc:
                self._close_call()
                code = status_code(exc)
                if code == grpc.StatusCode.ALREADY_EXISTS:
                    self.exists = True
                    return
                locked = code == grpc.StatusCode.UNAVAILABLE and is_lock(exc.details() or "")
                if not locked or time.monotonic() > deadline:
                    raise self.connection.error(exc, f"writing {self.what} (ref {self.ref})") from exc
            time.sleep(0.2)  # another writer holds the ref

    def _open_once(self) -> None:
        self._requests = queue.Queue(DEPTH)
        stat = content_pb2.WriteContentRequest(action=content_pb2.STAT, ref=self.ref, total=self.size, expected=self.digest or "")
        self._requests.put(stat)
        metadata = self.connection.metadata(leased=False)  # no lease: see the module docstring
        self._call = content_pb2_grpc.ContentStub(self.connection.channel).Write(self._request_iter(), metadata=metadata)
        first = next(self._call)
        if first.offset > self.size:  # a stale write of other bytes under this ref
            self._close_call()
            self.store.abort(self.ref)
            self._open_once()
            return
        self.resumed_at = self._next_offset = self._acked = first.offset
        self._reader = threading.Thread(target=self._drain, name=f"blob-{self.ref[-12:]}", daemon=True)
        self._reader.start()

    def _request_iter(self):
        while True:
            item = self._requests.get()
            if item is _END:
                return
            yield item

    def _drain(self) -> None:
        try:
            for reply in self._call:
                with self._progress:
                    self._acked = max(self._acked, reply.offset)
                    self._progress.notify_all()
        except grpc.RpcError as exc:
            self._error = exc
        except BaseException as exc:  # noqa: BLE001 - reported by push/close on the loading thread
            self._error = exc
        finally:
            with self._progress:
                self._progress.notify_all()

    def push(self, piece: bytes | memoryview) -> None:
        """The blob's next bytes; those below containerd's offset are only hashed."""
        view = memoryview(piece).cast("B")
        self._hash.update(view)
        start = self._position
        self._position += len(view)
        if self._position > self.size:
            raise ArchiveError(f"{self.what} is longer than its size {self.size}")
        if self.exists or self._position <= self.resumed_at:
            return
        self._pending += view[max(0, self.resumed_at - start) :]
        while len(self._pending) >= content.CHUNK:
            self._send(bytes(self._pending[: content.CHUNK]))
            del self._pending[: content.CHUNK]

    def _send(self, data: bytes) -> None:
        with self._progress:  # bound what is in flight, so a cut loses little
            while self._next_offset - self._acked > WINDOW and self._error is None and self._reader_alive():
                self._progress.wait(0.2)
        request = content_pb2.WriteContentRequest(action=content_pb2.WRITE, ref=self.ref, offset=self._next_offset, data=data)
        self._put(request)
        self._next_offset += len(data)
        self.sent += len(data)

    def _put(self, item: Any) -> None:
        while True:
            self._raise_if_broken()
            try:
                self._requests.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _reader_alive(self) -> bool:
        return self._reader is not None and self._reader.is_alive()

    def _raise_if_broken(self) -> None:
        if self._error is not None:
            exc = self._error
            if isinstance(exc, grpc.RpcError):
                raise self.connection.error(exc, f"writing {self.what} (ref {self.ref})", started=True) from exc
            raise ContainerdError(f"containerd at {self.connection.where}: writing {self.what} failed: {exc}") from exc
        if self._reader is not None and not self._reader.is_alive():
            raise ContainerdError(f"containerd at {self.connection.where}: the write of {self.what} ended early")

    def finish_data(self) -> str:
        """Send the rest and half-close; return the digest of every byte that passed."""
        if self._position != self.size:
            raise ArchiveError(f"{self.what} ended after {self._position} of its {self.size} bytes")
        digest = "sha256:" + self._hash.hexdigest()
        if self.digest and digest != self.digest:
            self.abandon()
            try:  # never resume from bytes known to be wrong
                self.store.abort(self.ref)
            except ContainerdError:
                pass
            raise mismatch(self.what, f"sha256 {digest}", f"the archive says it is {self.digest}")
        if not self.exists:
            if self._pending:
                self._send(bytes(self._pending))
                self._pending.clear()
            self._put(_END)
            assert self._reader is not None
            self._reader.join()
            if self._error is not None:
                self._raise_if_broken()
        self._close_call()
        return digest

    # ---------------------------------------------------------------- commit phase

    def commit(self, digest: str, labels: Mapping[str, str] | None = None) -> None:
        """Commit the complete ingest under the caller's lease; containerd checks ``digest`` and size."""
        if self.exists:
            if labels:
                self.store.set_labels(digest, labels)
            return

        def nothing_more(offset: int) -> list[bytes]:
            if offset < self.size:
                raise ContainerdError(
                    f"containerd at {self.connection.where}: the ingest {self.ref} holds {offset} of {self.size} bytes after its data was sent"
                )
            return []

        try:
            self.store.write(self.ref, digest, self.size, nothing_more, labels)
        except DigestMismatch:
            raise refused(f"containerd at {self.connection.where}", self.what, digest) from None

    def abandon(self) -> None:
        """Stop the data stream (the bytes so far stay under the ref, for a retry)."""
        self._close_call()

    def _close_call(self) -> None:
        call, self._call = self._call, None
        if call is not None:
            try:
                self._requests.put_nowait(_END)
            except queue.Full:
                pass
            call.cancel()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=5)
        self._reader = None


__all__ = ["BlobStream", "ref_for"]
