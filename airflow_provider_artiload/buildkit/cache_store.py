"""A BuildKit cache kept as an OCI image layout, on a local directory or an object-storage path.

The layout is the one buildx's ``type=local`` cache writes, so either tool
reads the other's: ``oci-layout``, ``index.json`` (the ``latest`` cache
manifest) and ``blobs/sha256/<hex>``. artiload adds its own bookkeeping under
``artiload/``:

- ``artiload/exports/<utc time>-<random>.json``: one small record per export
  (the cache manifest's descriptor), written once under a name nobody else
  uses, never rewritten;
- ``artiload/used/<hex>`` (object storage only): an empty marker written when
  an export reuses a blob the store already had (a local blob gets its mtime
  touched instead), so the clean-up sees the blob as recently used.

Why concurrent writers (two workers exporting to one location) are safe:

- Blobs are content-addressed and immutable. Each is written complete-or-
  absent (a temp name renamed into place; on S3 an upload that appears only
  when it completes) and only after its bytes hashed to its name. Two writers
  of the same blob write the same bytes; an existing blob is never replaced.
- ``index.json`` is written last, after every blob it names exists, and as
  one atomic replace: a reader sees the old index or the new one, never a
  mix. Concurrent writers merge: each reads the index, puts its own entry
  for the tag (keeping other tags), writes, reads back and retries when a
  writer whose export is *older* overwrote it, so the newest export wins the
  tag.
- The per-export records mean an export whose index entry lost the race is
  still a root for the clean-up during the grace period, so nothing a
  running build may still read is deleted.

The clean-up (:func:`~.cache_cleanup.clean`) deletes a blob only when no root references it
(``index.json`` and every export record younger than the grace period) *and*
it was last written or reused longer ago than the grace period.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_artiload import storage
from airflow_provider_artiload.exceptions import ArtiloadError, DigestMismatch
from airflow_provider_artiload.oci.digests import require_digest, require_size
from airflow_provider_artiload.storage import RemotePath, Target
from airflow_provider_artiload.storage import remote as _remote

INDEX = "index.json"
REREADS = 5
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
REF_NAME = "org.opencontainers.image.ref.name"
CREATED = "org.opencontainers.image.created"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
DIGEST_PATTERN = re.compile(r"^sha256:([0-9a-f]{64})$")
HEX_PATTERN = re.compile(r"^[0-9a-f]{64}$")
INDEX_RETRIES = 4
MAX_JSON = 16 << 20  # manifests and indexes we parse; blobs beyond this are layers
KEPT_HANDLES = 8


class CacheStoreError(ArtiloadError):
    """The cache location is unreadable, unwritable or holds something that is not a cache."""


def hex_of(digest: str) -> str:
    match = DIGEST_PATTERN.match(digest or "")
    if not match:
        raise CacheStoreError(f"not a sha256 digest: {digest!r}")
    return match.group(1)


@dataclass
class StoreStats:
    blobs_written: int = 0
    bytes_written: int = 0
    blobs_skipped: int = 0  # already in the store: never uploaded again
    blobs_read: set[str] = field(default_factory=set)
    bytes_read: int = 0


class LayoutStore:
    """One cache location: ``root`` is a local directory path or a :class:`RemotePath` directory."""

    def __init__(self, root: Target, *, label: str | None = None) -> None:
        self.root = storage.as_directory(root)
        self.label = label or str(root)
        self.remote = isinstance(self.root, RemotePath)
        self.stats = StoreStats()
        self._lock = threading.Lock()
        self._handles: dict[str, tuple[int, Any]] = {}  # digest -> (position, open handle), oldest first

    def __repr__(self) -> str:
        return f"LayoutStore({self.label})"

    # ---- places
    def at(self, relative: str) -> Target:
        return storage.child(self.root, relative)

    def blob_target(self, digest: str) -> Target:
        return self.at(f"blobs/sha256/{hex_of(digest)}")

    # ---- blobs
    def size(self, digest: str) -> int | None:
        """The blob's size, or None when the store lacks it."""
        target = self.blob_target(digest)
        try:
            if isinstance(target, RemotePath):
                return int(target.fs.info(target.path)["size"])
            return os.stat(target).st_size
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - any backend's error, named with the location
            if _missing(exc):
                return None
            raise CacheStoreError(f"cache {self.label}: cannot look up {digest}: {exc}") from exc

    def open_blob(self, digest: str) -> Any:
        target = self.blob_target(digest)
        try:
            return _remote.open_for_read(target) if isinstance(target, RemotePath) else open(target, "rb")
        except Exception as exc:  # noqa: BLE001
            raise CacheStoreError(f"cache {self.label}: cannot read {digest}: {exc}") from exc

    def read_range(self, digest: str, offset: int, size: int, chunk: int = 1 << 20) -> Iterator[bytes]:
        """``size`` bytes (0: to the end) of the blob from ``offset``, in chunks; only those bytes are fetched.

        BuildKit reads a blob as a series of 1 MiB ranges, one call each: the
        handle is kept between calls (a few, least recently used closed first),
        so object storage serves them from one ranged stream and its read-ahead.
        """
        handle = self._take_handle(digest, offset)
        complete = False
        try:
            left = size or None
            while left is None or left > 0:
                data = handle.read(chunk if left is None else min(chunk, left))
                if not data:
                    break
                offset += len(data)
                if left is not None:
                    left -= len(data)
                with self._lock:
                    self.stats.bytes_read += len(data)
                    self.stats.blobs_read.add(digest)
                yield data
            complete = True
        finally:
            if complete:
                self._keep_handle(digest, offset, handle)
            else:
                handle.close()

    def _take_handle(self, digest: str, offset: int) -> Any:
        with self._lock:
            kept = self._handles.pop(digest, None)
        if kept is not None:
            position, handle = kept
            if position != offset:
                handle.seek(offset)
            return handle
        handle = self.open_blob(digest)
        if offset:
            handle.seek(offset)
        return handle

    def _keep_handle(self, digest: str, position: int, handle: Any) -> None:
        with self._lock:
            old = self._handles.pop(digest, None)
            self._handles[digest] = (position, handle)
            evicted = ([old[1]] if old and old[1] is not handle else []) + [
                self._handles.pop(d)[1] for d in list(self._handles)[: max(0, len(self._handles) - KEPT_HANDLES)]
            ]
        for item in evicted:
            item.close()

    def close(self) -> None:
        """Close the read handles kept between calls."""
        with self._lock:
            handles, self._handles = list(self._handles.values()), {}
        for _, handle in handles:
            handle.close()

    def ingest(self, expected: str | None) -> Ingest:
        return Ingest(self, expected or None)

    def mark_used(self, digest: str) -> None:
        """An export reuses this blob: record the time, so the clean-up's grace period starts again."""
        with self._lock:
            self.stats.blobs_skipped += 1
        try:
            if self.remote:
                self._write_small(f"artiload/used/{hex_of(digest)}", b"")
            else:
                os.utime(self.blob_target(digest))
        except Exception:  # noqa: BLE001 - a missed mark only shortens that blob's grace period
            pass

    # ---- small files
    def _write_small(self, relative: str, data: bytes) -> None:
        with storage.atomic_file(self.at(relative), expected_size=len(data)) as out:
            out.write(data)
            out.commit()

    def read_small(self, relative: str) -> bytes | None:
        """A small file's bytes, or None when absent; re-read when another writer replaced it mid-read."""
        target = self.at(relative)
        for attempt in range(REREADS):
            try:
                if isinstance(target, RemotePath):
                    with target.fs.open(target.path, "rb") as handle:
                        return handle.read(MAX_JSON + 1)
                with open(target, "rb") as handle:
                    return handle.read(MAX_JSON + 1)
            except FileNotFoundError:
                return None
            except Exception as exc:  # noqa: BLE001
                if _missing(exc):
                    return None
                if _replaced(exc) and attempt + 1 < REREADS:
                    continue  # s3fs: the object's ETag changed between its HEAD and GET
                raise CacheStoreError(f"cache {self.label}: cannot read {relative}: {exc}") from exc
        raise AssertionError("unreachable")

    # ---- the index
    def read_index(self) -> dict[str, Any]:
        data = self.read_small(INDEX)
        if data is None:
            return {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}
        try:
            index = json.loads(data)
            if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list):
                raise ValueError("not an OCI index")
        except ValueError as exc:
            raise CacheStoreError(f"cache {self.label}: {INDEX} is not an OCI image index: {exc}") from exc
        index.setdefault("manifests", [])
        return index

    def latest(self, tag: str = "latest") -> dict[str, Any] | None:
        """The descriptor ``index.json`` names for ``tag``, if any."""
        for desc in self.read_index()["manifests"]:
            if (desc.get("annotations") or {}).get(REF_NAME) == tag:
                return desc
        return None

    def record_export(self, descriptor: dict[str, Any], *, tag: str = "latest", now: float | None = None) -> str:
        """After an export: its record, then ``index.json`` pointing ``tag`` at it. Returns the record's name."""
        hex_of(descriptor.get("digest", ""))
        now = time.time() if now is None else now
        created = _dt.datetime.fromtimestamp(now, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        entry = {
            "mediaType": descriptor.get("mediaType") or INDEX_MEDIA_TYPE,
            "digest": descriptor["digest"],
            "size": int(descriptor.get("size") or 0),
            "annotations": {REF_NAME: tag, CREATED: created},
        }
        if self.size(descriptor["digest"]) is None:
            raise CacheStoreError(f"cache {self.label}: the exported manifest {descriptor['digest']} is missing")
        name = f"artiload/exports/{created.replace(':', '')}-{secrets.token_hex(4)}.json"
        self._write_small(name, json.dumps({"descriptor": entry, "tag": tag}, sort_keys=True).encode())
        if self.read_small("oci-layout") is None:
            self._write_small("oci-layout", OCI_LAYOUT)
        for _ in range(INDEX_RETRIES):
            index = self.read_index()
            current = _tagged(index, tag)
            if current is not None and _created(current) > created:
                return name  # a newer export already holds the tag
            index["manifests"] = [d for d in index["manifests"] if d is not current] + [entry]
            index.setdefault("schemaVersion", 2)
            index.setdefault("mediaType", INDEX_MEDIA_TYPE)
            self._write_small(INDEX, json.dumps(index, sort_keys=True).encode())
            now_there = _tagged(self.read_index(), tag)
            if now_there is not None and _created(now_there) >= created:
                return name
        raise CacheStoreError(f"cache {self.label}: {INDEX} kept changing under this export; retried {INDEX_RETRIES} times")

    # ---- listing, for the clean-up
    def listing(self, relative: str) -> list[tuple[str, float]]:
        """(name, mtime) of the files directly in ``relative``; empty when it does not exist."""
        target = self.at(relative)
        try:
            if isinstance(target, RemotePath):
                return [(p.rstrip("/").rsplit("/", 1)[-1], t) for p, t in _remote.listing(target)]
            with os.scandir(target) as entries:
                return [(e.name, e.stat().st_mtime) for e in entries if e.is_file(follow_symlinks=False)]
        except FileNotFoundError:
            return []
        except Exception as exc:  # noqa: BLE001
            if _missing(exc):
                return []
            raise CacheStoreError(f"cache {self.label}: cannot list {relative}: {exc}") from exc

    def remove(self, relative: str) -> None:
        storage.remove(self.at(relative))


class Ingest:
    """One blob being written by the daemon: hashed as it streams, verified before it becomes visible.

    With the expected digest known up front the bytes go straight into the
    blob's atomic file; otherwise into a local spool file, copied on commit.
    """

    def __init__(self, store: LayoutStore, expected: str | None) -> None:
        self.store = store
        self.expected = expected
        self.offset = 0
        self._hash = hashlib.sha256()
        self._spool: Any = None
        self._file: Any = None
        if expected is not None:
            self._file = storage.atomic_file(store.blob_target(expected)).__enter__()
        else:
            self._spool = tempfile.TemporaryFile(prefix="artiload-cache-")
        self.done = False

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def write(self, data: bytes) -> None:
        (self._file or self._spool).write(data)
        self._hash.update(data)
        self.offset += len(data)

    def commit(self, total: int, expected: str | None) -> str:
        """Verify size and digest, then publish; returns the digest. Raises DigestMismatch on bad bytes."""
        actual = self.digest
        where = f"cache {self.store.label}"
        wanted = expected or self.expected
        try:
            if total:
                require_size(self.offset, total, what=f"blob {wanted or actual}", claim="BuildKit announced", where=where)
            if wanted:
                require_digest(actual, wanted, what="blob", claim="BuildKit named it", where=where)
        except DigestMismatch:
            self.abort()
            raise
        if self.store.size(actual) is not None:  # a concurrent writer published the same bytes first
            self.abort()
        elif self._file is not None:
            self._file.commit()
            self._file.__exit__(None, None, None)
        else:
            self._spool.seek(0)
            with storage.atomic_file(self.store.blob_target(actual), expected_size=self.offset) as out:
                while chunk := self._spool.read(1 << 20):
                    out.write(chunk)
                out.commit()
            self._spool.close()
        with self.store._lock:
            self.store.stats.blobs_written += 1
            self.store.stats.bytes_written += self.offset
        self.done = True
        return actual

    def abort(self) -> None:
        if self.done:
            return
        self.done = True
        if self._file is not None:
            self._file.__exit__(RuntimeError, None, None)
        if self._spool is not None:
            self._spool.close()


def _tagged(index: dict[str, Any], tag: str) -> dict[str, Any] | None:
    for desc in index.get("manifests", []):
        if isinstance(desc, dict) and (desc.get("annotations") or {}).get(REF_NAME) == tag:
            return desc
    return None


def _created(desc: dict[str, Any]) -> str:
    return (desc.get("annotations") or {}).get(CREATED, "")


def _replaced(exc: Exception) -> bool:
    """True for a read that lost a race with a writer replacing the whole object (s3fs FileExpired, EBUSY)."""
    return isinstance(exc, OSError) and exc.errno == errno.EBUSY


def _missing(exc: Exception) -> bool:
    text = str(exc).lower()
    return isinstance(exc, FileNotFoundError) or "no such file" in text or "not found" in text or "nosuchkey" in text


__all__ = ["CacheStoreError", "Ingest", "LayoutStore"]
