"""Hash a member as it streams: its blob digest and, through gzip or zstd, its diff ID.

Decompression follows what the engines do (Go's DecompressStream): the
format is decided by the first bytes (:func:`outer_compression`: gzip,
bzip2, xz, zstd, a zstd stream also when it starts with a skippable frame),
gzip reads every member of a multi-member stream, zstd every frame;
output is produced in bounded pieces (at most :data:`PIECE` bytes at a
time, zstd included), so a small compressed chunk that inflates hugely
never sits in memory whole.

Every comparison of bytes against a digest, here and in the node and
containerd code, reports through :func:`require_digest` (and its kin below),
so a DigestMismatch always reads ``<where>: <what> has <found>, but <claim>
(<verdict>)``. They live here, below the scanner, because the hasher needs
them; :mod:`.verify` (which says what is checked when) re-exports them.
"""

from __future__ import annotations

import bz2
import hashlib
import lzma
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from airflow_provider_artiload.exceptions import ArchiveError, DigestMismatch

PIECE = 4 << 20
SNIFF = 10  # Go's DecompressStream peeks 10 bytes
ZSTD_SLICE = 256  # input per step when pieces are pulled (feed): a zstd block of 4 bytes may inflate to 128 KiB
BZIP2_MAGIC = b"BZh"
GZIP_MAGIC = b"\x1f\x8b\x08"
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZSTD_SKIPPABLE, ZSTD_SKIPPABLE_MASK = 0x184D2A50, 0xFFFFFFF0
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


# ---------------------------------------------------------------- what the engine decompresses


def outer_compression(head: bytes) -> str:
    """What dockerd's DecompressStream (moby pkg/archive DetectCompression) sees in a stream's first bytes.

    ``head`` is the first :data:`SNIFF` bytes (or the whole stream, if shorter).
    Returns ``bzip2``, ``gzip``, ``xz``, ``zstd`` (a zstd frame, or a zstd
    skippable frame: Docker 28 decompresses both) or ``none``. Whatever an
    engine would decompress, artiload decompresses before reading the tar.
    """
    if head.startswith(BZIP2_MAGIC):
        return "bzip2"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if len(head) >= 8 and struct.unpack_from("<I", head)[0] & ZSTD_SKIPPABLE_MASK == ZSTD_SKIPPABLE:
        return "zstd"
    return "none"


# ---------------------------------------------------------------- hashing


@dataclass(frozen=True)
class Check:
    """What a member's bytes must hash to: the blob ``digest`` and/or, uncompressed, the ``diff_id``."""

    digest: str | None = None
    diff_id: str | None = None
    what: str = "layer"
    inflate: bool = False  # compute the diff ID even with none to compare yet (checked later by the caller)


class Inflater:
    """Streaming gzip (multi-member), bzip2, xz or zstd (multi-frame, skippable frames too), in bounded pieces.

    :meth:`feed_into` hands each piece (at most :data:`PIECE` bytes) to a
    sink as it is made; :meth:`feed` yields them (zstd then steps through
    its input :data:`ZSTD_SLICE` bytes at a time, so one step cannot make
    more than a few MiB: python-zstandard's decompressobj has no output
    limit, which let a 134 KiB archive take 4 GB).
    """

    def __init__(self, kind: str, where: str) -> None:
        if kind not in ("gzip", "bzip2", "xz", "zstd"):
            raise ArchiveError(f"{where}: {kind} compression is not supported")
        self.kind = kind
        self.where = where
        self._obj = self._new()
        self.started = False

    def _new(self) -> Any:
        if self.kind == "gzip":
            return zlib.decompressobj(wbits=31)
        if self.kind == "bzip2":
            return bz2.BZ2Decompressor()
        if self.kind == "xz":
            return lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        return _Zstd()

    def feed(self, data: bytes | memoryview) -> Iterator[bytes]:
        """Yield the decompressed pieces of ``data``."""
        if self.kind != "zstd":
            out: list[bytes] = []
            view = memoryview(data).cast("B")
            for start in range(0, len(view), 1 << 16):  # 64 KiB of gzip/bzip2/xz input makes at most a few pieces
                self.feed_into(view[start : start + (1 << 16)], out.append)
                yield from out
                out.clear()
            return
        out = []
        view = memoryview(data).cast("B")
        for start in range(0, len(view), ZSTD_SLICE):
            self.feed_into(view[start : start + ZSTD_SLICE], out.append)
            yield from out
            out.clear()

    def feed_into(self, data: bytes | memoryview, sink: Callable[[bytes], Any]) -> None:
        """Decompress ``data``, handing every piece to ``sink`` as soon as it is made."""
        try:
            if self.kind == "zstd":
                self.started = self.started or bool(len(data))
                self._obj.feed(data, sink)
                return
            pending: bytes | memoryview = data
            while len(pending):
                self.started = True
                if self.kind == "gzip":
                    sink(self._obj.decompress(pending, PIECE))
                    while self._obj.unconsumed_tail:
                        sink(self._obj.decompress(self._obj.unconsumed_tail, PIECE))
                else:
                    sink(self._obj.decompress(pending, PIECE))
                    while not self._obj.eof and not self._obj.needs_input:
                        sink(self._obj.decompress(b"", PIECE))
                pending = self._obj.unused_data if self._obj.eof else b""
                if self._obj.eof and pending:
                    self._obj = self._new()  # the next gzip member / bzip2 or xz stream
        except ArchiveError:
            raise
        except Exception as exc:  # zlib.error, OSError, lzma.LZMAError, zstandard.ZstdError
            raise ArchiveError(f"{self.where}: corrupt {self.kind} data: {exc}") from None

    def finish(self) -> None:
        if not self._obj.eof:
            raise ArchiveError(f"{self.where}: the {self.kind} stream is truncated")


class _Zstd:
    """zstd through python-zstandard's stream writer (which hands out each piece as it is made, and reads every
    frame, skippable ones too), and a walk over the frame and block headers to know whether the stream ended
    at a frame's end (the writer does not say)."""

    def __init__(self) -> None:
        import zstandard

        self._zstd = zstandard
        self._sink: Callable[[bytes], Any] | None = None
        self._writer = zstandard.ZstdDecompressor().stream_writer(self, write_size=PIECE, write_return_read=True)
        self._head = bytearray()  # header bytes not yet complete
        self._need = 4  # bytes of the next header to collect
        self._skip = 0  # bytes to pass over (block contents, a skippable frame's data, a checksum)
        self._state = "magic"
        self._checksum = False
        self.eof = True  # between frames

    def write(self, piece: bytes) -> int:
        assert self._sink is not None
        self._sink(bytes(piece))
        return len(piece)

    def feed(self, data: bytes | memoryview, sink: Callable[[bytes], Any]) -> None:
        self._track(memoryview(data).cast("B"))
        self._sink = sink
        try:
            self._writer.write(data)
        finally:
            self._sink = None

    def _track(self, view: memoryview) -> None:
        position = 0
        while position < len(view):
            if self._skip:
                step = min(self._skip, len(view) - position)
                self._skip -= step
                position += step
                if not self._skip and self._state == "end":
                    self._state, self._need, self.eof = "magic", 4, True
                continue
            take = min(self._need - len(self._head), len(view) - position)
            self._head += view[position : position + take]
            position += take
            if len(self._head) == self._need:
                self._header()

    def _header(self) -> None:
        head, self._head = bytes(self._head), bytearray()
        if self._state == "magic":
            self.eof = False
            magic = struct.unpack("<I", head)[0]
            if magic & ZSTD_SKIPPABLE_MASK == ZSTD_SKIPPABLE:
                self._state, self._need = "skippable", 4
            elif head == ZSTD_MAGIC:
                self._state, self._need = "descriptor", 1
            else:
                raise ValueError(f"not a zstd frame (magic {head.hex()})")
        elif self._state == "skippable":
            self._skip = struct.unpack("<I", head)[0]
            self._state, self._need = "end", 4
            if not self._skip:
                self._state, self.eof = "magic", True
        elif self._state == "descriptor":
            descriptor = head[0]
            single = descriptor >> 5 & 1
            size_flag = descriptor >> 6
            self._checksum = bool(descriptor >> 2 & 1)
            rest = (0 if single else 1) + (0, 1, 2, 4)[descriptor & 3] + ((1 if single else 0), 2, 4, 8)[size_flag]
            self._state, self._need = "block", 3
            if rest:
                self._skip = rest
        elif self._state == "block":
            value = int.from_bytes(head, "little")
            last, kind, size = value & 1, value >> 1 & 3, value >> 3
            if kind == 3:
                raise ValueError("a zstd block of the reserved type")
            self._skip = 1 if kind == 1 else size
            if last:
                if self._checksum:
                    self._skip += 4
                self._state = "end"
                if not self._skip:
                    self._state, self._need, self.eof = "magic", 4, True


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
        kind = outer_compression(head)
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
            self._inflater.feed_into(piece, self._diff.update)
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
