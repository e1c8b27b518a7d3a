"""Hash a member as it streams: its blob digest and, through gzip or zstd, its diff ID.

Decompression follows what the engines do (Go's DecompressStream): the
format is decided by the first bytes, gzip reads every member of a
multi-member stream, zstd every frame; output is produced in bounded pieces,
so a small compressed chunk that inflates hugely never sits in memory whole.

Every comparison of bytes against a digest, here and in the node and
containerd code, reports through :func:`require_digest` (and its kin below),
so a DigestMismatch always reads ``<where>: <what> has <found>, but <claim>
(<verdict>)``. They live here, below the scanner, because the hasher needs
them; :mod:`.verify` (which says what is checked when) re-exports them.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from typing import Any

from airflow_provider_artiload.exceptions import ArchiveError, DigestMismatch
from airflow_provider_artiload.oci.image import sniff_compression

PIECE = 4 << 20
SNIFF = 4
BLOB = "the image says its blob is"  # a claim: who named the digest the bytes were held against
DIFF_ID = "the image config says its diff ID is"
SIZE = "the image says its size is"


# ---------------------------------------------------------------- how a mismatch is reported


def mismatch(what: str, found: str, claim: str, *, where: str = "", verdict: str = "corrupt") -> DigestMismatch:
    """The one shape of a DigestMismatch: where, the thing read, what it hashed to, who said otherwise, and so what."""
    prefix = f"{where}: " if where else ""
    return DigestMismatch(f"{prefix}{what} has {found}, but {claim} ({verdict})")


def require_digest(
    actual: str | None, expected: str, *, what: str, claim: str = BLOB, how: str = "", where: str = "", verdict: str = "corrupt"
) -> None:
    """Raise :func:`mismatch` unless the bytes hashed to ``expected``; ``how`` says what was hashed (`` uncompressed``)."""
    if actual != expected:
        raise mismatch(what, f"sha256 {actual}{how}", f"{claim} {expected}", where=where, verdict=verdict)


def require_size(actual: int, expected: int, *, what: str, claim: str = SIZE, where: str = "", verdict: str = "corrupt") -> None:
    """Raise :func:`mismatch` unless ``actual`` bytes were read where ``expected`` were promised."""
    if actual != expected:
        raise mismatch(what, f"{actual} bytes", f"{claim} {expected}", where=where, verdict=verdict)


def refused(by: str, what: str, expected: str, detail: str = "corrupt") -> DigestMismatch:
    """A store that hashes what it is sent (containerd's commit) said no: who, what, and what it should have been."""
    return DigestMismatch(f"{by} refused {what}: its bytes are not {expected} ({detail})")


# ---------------------------------------------------------------- hashing


@dataclass(frozen=True)
class Check:
    """What a member's bytes must hash to: the blob ``digest`` and/or, uncompressed, the ``diff_id``."""

    digest: str | None = None
    diff_id: str | None = None
    what: str = "layer"
    inflate: bool = False  # compute the diff ID even with none to compare yet (checked later by the caller)


class Inflater:
    """Streaming gzip (multi-member) or zstd (multi-frame) decompression, in bounded pieces."""

    def __init__(self, kind: str, where: str) -> None:
        self.kind = kind
        self.where = where
        self._obj = self._new()
        self.started = False

    def _new(self) -> Any:
        if self.kind == "gzip":
            return zlib.decompressobj(wbits=31)
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj()

    def feed(self, data: bytes | memoryview):
        """Yield the decompressed pieces of ``data``."""
        pending = bytes(data)
        try:
            while pending:
                self.started = True
                if self.kind == "gzip":
                    out = self._obj.decompress(pending, PIECE)
                    yield out
                    while self._obj.unconsumed_tail:
                        yield self._obj.decompress(self._obj.unconsumed_tail, PIECE)
                else:
                    yield self._obj.decompress(pending)
                pending = self._obj.unused_data if self._obj.eof else b""
                if self._obj.eof and pending:
                    self._obj = self._new()  # the next gzip member / zstd frame
        except ArchiveError:
            raise
        except Exception as exc:  # zlib.error, zstandard.ZstdError
            raise ArchiveError(f"{self.where}: corrupt {self.kind} data: {exc}") from None

    def finish(self) -> None:
        if not self._obj.eof:
            raise ArchiveError(f"{self.where}: the {self.kind} stream is truncated")


class MemberHasher:
    """sha256 of a member's bytes and, when a diff ID is expected, of its decompressed content.

    The blob itself is hashed only where its digest is asked for or is the
    diff ID (an uncompressed layer): a compressed layer checked by diff ID
    alone costs one inflate and one sha256, not two sha256s.
    """

    def __init__(self, check: Check, name: str) -> None:
        self.check = check
        self.name = name
        self._blob: Any = hashlib.sha256()
        self._diff: Any = None  # a second hash only for compressed blobs
        self._inflater: Inflater | None = None
        self._started = not (check.diff_id or check.inflate)
        self._broken: ArchiveError | None = None
        self._head = b""

    def update(self, piece: memoryview) -> None:
        if self._started:
            if self._blob is not None:
                self._blob.update(piece)
            if self._inflater is not None:
                self._inflate(piece)
            return
        self._head += bytes(piece)
        if len(self._head) >= SNIFF:
            self._start()

    def _start(self) -> None:
        self._started = True
        head, self._head = self._head, b""
        kind = sniff_compression(head)
        if kind != "none":
            self._diff = hashlib.sha256()
            self._inflater = Inflater(kind, f"layer {self.name}")
            if not self.check.digest:
                self._blob = None
        if self._blob is not None:
            self._blob.update(head)
        if self._inflater is not None:
            self._inflate(memoryview(head))

    def _inflate(self, piece: memoryview) -> None:
        assert self._inflater is not None
        if self._broken is not None:
            return
        try:
            for out in self._inflater.feed(piece):
                self._diff.update(out)
        except ArchiveError as exc:
            self._broken = exc  # reported at the end: a wrong blob digest names the cause better

    def finish(self) -> tuple[str | None, str | None]:
        """Return (blob digest, diff ID), None where not computed; raise DigestMismatch naming the member if either differs."""
        if not self._started:
            self._start()
        blob = "sha256:" + self._blob.hexdigest() if self._blob is not None else None
        diff = None
        if self.check.digest:
            require_digest(blob, self.check.digest, what=f"{self.check.what} {self.name}")
        if self._broken is not None:
            raise self._broken
        if self.check.diff_id or self.check.inflate:
            if self._inflater is not None:
                self._inflater.finish()
                diff = "sha256:" + self._diff.hexdigest()
            else:
                diff = blob  # an uncompressed layer's blob is its tar
        if self.check.diff_id:
            how = " uncompressed" if self._inflater is not None else ""
            require_digest(diff, self.check.diff_id, what=f"{self.check.what} {self.name}", claim=DIFF_ID, how=how)
        return blob, diff
