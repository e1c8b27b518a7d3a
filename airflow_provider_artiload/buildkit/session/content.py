"""Content: cache stores the daemon reads and writes through the session (BuildKit's session content attachable).

BuildKit's ``type=local`` cache exporter and importer do not touch the
client's disk themselves: they call ``containerd.services.content.v1.Content``
on the session, naming the store in the call metadata
``buildkit-attachable-store-id: local:<dest or src>``. So the cache lands
wherever this process runs, whatever machine BuildKit is on, and the store
behind an id can be a local directory or object storage (see
:mod:`..cache_store`).

The write protocol is containerd's: the first message (STAT) names the ref
and, usually, the expected digest; a blob the store already has is refused
with ALREADY_EXISTS, which the daemon treats as done (so an export uploads
only what the store lacks). WRITE messages carry data at the current
offset; COMMIT verifies size and digest before the blob becomes visible.
Reads (Info, Read with offset and size) fetch only the bytes asked for.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import grpc
from google.protobuf import empty_pb2

from airflow_provider_artiload.buildkit.cache_store import CacheStoreError, Ingest, LayoutStore, hex_of
from airflow_provider_artiload.containerd._proto import content_pb2, content_pb2_grpc
from airflow_provider_artiload.exceptions import ArtiloadError, DigestMismatch

log = logging.getLogger(__name__)

STORE_HEADER = "buildkit-attachable-store-id"
READ_CHUNK = 1 << 20


class ContentStores(content_pb2_grpc.ContentServicer):
    """``{store id: LayoutStore}`` served as one Content service."""

    def __init__(self, stores: Mapping[str, LayoutStore]) -> None:
        self.stores = dict(stores)
        self._ingests: dict[str, Ingest] = {}
        self._lock = threading.Lock()
        self.errors: list[str] = []

    def __repr__(self) -> str:
        return f"ContentStores({sorted(self.stores)})"

    def register(self, server: Any) -> None:
        content_pb2_grpc.add_ContentServicer_to_server(self, server)

    def _store(self, context: Any) -> LayoutStore:
        ids = [value for key, value in context.invocation_metadata() if key == STORE_HEADER]
        if not ids:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request lacks metadata {STORE_HEADER!r}")
        store = self.stores.get(ids[0])
        if store is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown store {ids[0]}")
        return store

    def _fail(self, context: Any, code: grpc.StatusCode, message: str) -> None:
        self.errors.append(message)
        log.warning("cache store: %s", message)
        context.abort(code, message)

    def _size(self, store: LayoutStore, digest: str, context: Any) -> int:
        try:
            hex_of(digest)
            size = store.size(digest)
        except CacheStoreError as exc:
            self._fail(context, grpc.StatusCode.INVALID_ARGUMENT if "not a sha256" in str(exc) else grpc.StatusCode.UNAVAILABLE, str(exc))
        if size is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"content digest {digest}: not found")
        return size

    def Info(self, request, context):  # noqa: N802
        store = self._store(context)
        size = self._size(store, request.digest, context)
        return content_pb2.InfoResponse(info=content_pb2.Info(digest=request.digest, size=size))

    def Update(self, request, context):  # noqa: N802 - labels are not kept: a cache layout has no labels
        store = self._store(context)
        size = self._size(store, request.info.digest, context)
        return content_pb2.UpdateResponse(info=content_pb2.Info(digest=request.info.digest, size=size))

    def Delete(self, request, context):  # noqa: N802
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "artiload's cache stores are never deleted from by the daemon")

    def Read(self, request, context) -> Iterator[content_pb2.ReadContentResponse]:  # noqa: N802
        store = self._store(context)
        self._size(store, request.digest, context)
        offset = request.offset
        try:
            for data in store.read_range(request.digest, request.offset, request.size, READ_CHUNK):
                yield content_pb2.ReadContentResponse(offset=offset, data=data)
                offset += len(data)
        except CacheStoreError as exc:
            self._fail(context, grpc.StatusCode.UNAVAILABLE, str(exc))

    def Status(self, request, context):  # noqa: N802
        with self._lock:
            ingest = self._ingests.get(request.ref)
        if ingest is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no write in progress for ref {request.ref!r}")
        return content_pb2.StatusResponse(
            status=content_pb2.Status(ref=request.ref, offset=ingest.offset, expected=ingest.expected or "")
        )

    def ListStatuses(self, request, context):  # noqa: N802
        with self._lock:
            statuses = [content_pb2.Status(ref=ref, offset=i.offset, expected=i.expected or "") for ref, i in self._ingests.items()]
        return content_pb2.ListStatusesResponse(statuses=statuses)

    def Abort(self, request, context):  # noqa: N802
        with self._lock:
            ingest = self._ingests.pop(request.ref, None)
        if ingest is not None:
            ingest.abort()
        return empty_pb2.Empty()

    def Write(self, request_iterator, context) -> Iterator[content_pb2.WriteContentResponse]:  # noqa: N802
        store = self._store(context)
        first = next(request_iterator, None)
        if first is None:
            return
        ref, expected, total = first.ref, first.expected or None, first.total
        if expected and store.size(expected) is not None:
            store.mark_used(expected)
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"blob with expected digest {expected} exists")
        try:
            ingest = store.ingest(expected)
        except ArtiloadError as exc:
            self._fail(context, grpc.StatusCode.UNAVAILABLE, str(exc))
        with self._lock:
            previous = self._ingests.pop(ref, None)
            self._ingests[ref] = ingest
        if previous is not None:
            previous.abort()
        try:
            request = first
            while request is not None:
                if request.expected:
                    expected = request.expected
                if request.total > 0:
                    total = request.total
                action = request.action
                reply = content_pb2.WriteContentResponse(action=action, offset=ingest.offset)
                if action == content_pb2.STAT:
                    reply.digest, reply.total = ingest.digest, total
                else:
                    if request.offset and request.offset != ingest.offset:
                        context.abort(grpc.StatusCode.OUT_OF_RANGE, f"write @{request.offset} must occur at current offset {ingest.offset}")
                    if request.offset == 0 and ingest.offset > 0:  # the writer starts over
                        ingest.abort()
                        ingest = store.ingest(expected)
                        with self._lock:
                            self._ingests[ref] = ingest
                    if request.data:
                        ingest.write(request.data)
                    reply.offset = ingest.offset
                    if action == content_pb2.COMMIT:
                        try:
                            ingest.commit(total, expected)
                        except DigestMismatch as exc:
                            self._fail(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
                    reply.digest = ingest.digest
                yield reply
                request = next(request_iterator, None)
        except ArtiloadError as exc:
            self._fail(context, grpc.StatusCode.UNAVAILABLE, str(exc))
        finally:
            ingest.abort()  # a no-op once committed
            with self._lock:
                if self._ingests.get(ref) is ingest:
                    del self._ingests[ref]


__all__ = ["STORE_HEADER", "ContentStores"]
