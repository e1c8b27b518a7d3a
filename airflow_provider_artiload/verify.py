"""Check a docker-archive while it streams, and withhold its end until it passes.

What is checked, each byte hashed once:
- with the whole archive read and a digest promised (an artifact): its sha256;
- otherwise: each layer that passes against its diff ID (so a thin stream,
  which leaves layers out, is still checked member by member);
- always: tar structure, a manifest naming only members that are present
  (or deliberately left out), and the image ID (the config's digest).
The last chunk is held back until all of that passed: a target engine never
receives the end of a bad archive, so it cannot finish loading it.

A gzip-compressed archive (which ``docker load`` accepts) passes through
compressed; it is decompressed only for the checks, in bounded pieces.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

from airflow_provider_artiload.engine.archive import ArchiveIndex, ArchiveScanner, Expect

GZIP_MAGIC = b"\x1f\x8b"
GUNZIP_PIECE = 4 << 20
from airflow_provider_artiload.exceptions import ArchiveError, DigestMismatch


class VerifiedArchive:
    """Iterate over ``chunks`` unchanged, verifying as described above."""

    def __init__(
        self,
        chunks: Iterable[bytes],
        *,
        where: str,
        expected_sha256: str | None = None,
        expect: Expect | None = None,
        expected_image_id: str | None = None,
        omitted: frozenset[str] = frozenset(),
    ) -> None:
        self._chunks = chunks
        self.where = where
        self.expected_sha256 = expected_sha256
        self.expected_image_id = expected_image_id
        self.omitted = omitted
        self.scanner = ArchiveScanner(expect=None if expected_sha256 else expect)
        self.size = 0
        self._hash = hashlib.sha256() if expected_sha256 else None
        self._gunzip: Any = None
        self.index: ArchiveIndex | None = None

    @property
    def sha256(self) -> str | None:
        return "sha256:" + self._hash.hexdigest() if self._hash else None

    def __iter__(self) -> Iterator[bytes]:
        held: bytes | None = None
        for chunk in self._chunks:
            if not self.size and chunk[:2] == GZIP_MAGIC:
                self._gunzip = zlib.decompressobj(wbits=31)
            self._check(lambda: self._scan(chunk))
            if self._hash is not None:
                self._hash.update(chunk)
            self.size += len(chunk)
            if held is not None:
                yield held
            held = chunk
        self._check(self._finish)
        if held is not None:
            yield held

    def _scan(self, chunk: bytes) -> None:
        if self._gunzip is None:
            self.scanner.feed(chunk)
            return
        try:
            data = self._gunzip.decompress(chunk, GUNZIP_PIECE)
            while True:  # a small compressed chunk may inflate hugely: never hold more than one piece
                self.scanner.feed(data)
                if not self._gunzip.unconsumed_tail:
                    break
                data = self._gunzip.decompress(self._gunzip.unconsumed_tail, GUNZIP_PIECE)
        except zlib.error as exc:
            raise ArchiveError(f"corrupt gzip data: {exc}") from None

    def _finish(self) -> None:
        if self._gunzip is not None and not self._gunzip.eof:
            raise ArchiveError("the gzip stream is truncated")
        index = self.scanner.finish()
        index.check_complete(self.omitted)
        if self.expected_sha256 and self.sha256 != self.expected_sha256:
            raise DigestMismatch(
                f"sha256 is {self.sha256}, the artifact says {self.expected_sha256}; "
                "the file changed or is corrupt, nothing was loaded"
            )
        image_id = index.image_ids()[0]
        if self.expected_image_id and image_id != self.expected_image_id:
            raise DigestMismatch(f"the archive holds image {image_id}, expected {self.expected_image_id}")
        self.index = index

    def _check(self, step) -> None:
        try:
            step()
        except ArchiveError as exc:
            if str(exc).startswith(self.where):
                raise
            raise type(exc)(f"{self.where}: {exc}") from None
