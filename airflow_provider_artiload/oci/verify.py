"""How artiload verifies image bytes: which are checked, when, by what, and how a mismatch reads.

**How.** Bytes are hashed as they stream (``digests.MemberHasher``; through
gzip or zstd for a diff ID) and held against a digest with
:func:`require_digest` or :func:`require_size`; a store that hashes for
itself and says no is reported with :func:`refused`. Every DigestMismatch
reads ``<where>: <what> has <found>, but <claim> (<verdict>)``.

**Which, and when.**

- Any archive streamed to a target passes through :class:`VerifiedArchive`:
  tar structure as Go reads it, metadata naming only members present (or
  left out on purpose), the image's identity against every digest promised,
  and either the artifact's sha256 (when one is promised, it covers every
  byte) or the members ``expect`` names; each byte is hashed once. The last
  chunk is withheld until all of that passed, so a target never receives the
  end of a bad archive and cannot finish loading it.
- Which members ``expect`` names is the policy section at the end of this
  module: a reused archive hashes every member; a save, the file once; a
  load, only what some target leaves to us: a blob digest, a diff ID, both.
- A classic-store engine checks each layer it registers against its diff ID
  before it records the image (its refusal is translated in
  ``engine/client.py``); the layers it skips unread are checked here.
- A containerd-store engine's importer stores each blob under the sha256 of
  the bytes it got, whatever the member is named, and records the image
  before it unpacks; the unpack checks each new layer's diff ID ("wrong diff
  id calculated on extraction", seen on Docker 28.5 with containerd 2.1,
  issue 21 item 2), skipping the chains it has. So every blob digest is
  checked here; where that unpack can be relied on, the archive goes in
  unnamed, is named only once whole, and a refused one's record is removed
  (``transfer/engine.py``), so only the diff IDs of the layers it will not
  unpack are checked here; elsewhere, every diff ID is.
- A containerd node load hashes each blob as it is written
  (``containerd/stream.py``), containerd hashes it again at commit
  (``containerd/content.py``), each layer's diff ID is checked as it is
  unpacked (``containerd/unpack.py``), and a legacy ``layer.tar``'s digest
  and the image's target after the stream (``transfer/node/finish.py``).
- A node export (``transfer/node/source.py``) checks every blob it reads
  from the node before passing on the blob's last piece.

A compressed archive (which ``docker load`` accepts): for a load
(``plain=True``) the outer compression is decided as Go decides it and
removed before any check (:func:`.digests.outer_compression`), and what is yielded is the plain
tar, which a target reframes (:mod:`.reframe`); otherwise (a save) gzip
passes through as read and is decompressed only for the checks, in bounded
pieces, every gzip member of it, as Go's reader does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet

from airflow_provider_artiload.oci.archive import ArchiveIndex, ArchiveScanner, Expect
from airflow_provider_artiload.oci.digests import (
    BLOB,
    DIFF_ID,
    SIZE,
    SNIFF,
    Check,
    Inflater,
    mismatch,
    outer_compression,
    refused,
    require_digest,
    require_size,
)
from airflow_provider_artiload.exceptions import ArchiveError, DigestMismatch
from airflow_provider_artiload.oci.image import Image
from airflow_provider_artiload.oci.layout import layer_position

GZIP_MAGIC = b"\x1f\x8b"
PLAIN_PIECE = 1 << 20  # what a decompressed stream is handed on in


class VerifiedArchive:
    """Iterate over ``chunks`` unchanged, verifying as described above."""

    def __init__(
        self,
        chunks: Iterable[bytes],
        *,
        where: str,
        expected_sha256: str | None = None,
        expect: Expect | None = None,
        expected_ids: Iterable[str] = (),
        omitted: frozenset[str] = frozenset(),
        platform: str | None = None,
        plain: bool = False,
        platforms: Iterable[str] = (),
    ) -> None:
        """``plain``: remove the archive's outer compression and yield the plain tar (a load); else yield it as read."""
        self._chunks = chunks
        self.plain = plain
        self._outer: Inflater | None = None
        self.where = where
        self.expected_sha256 = expected_sha256
        self.expected_ids = {i for i in expected_ids if i}
        self.omitted = omitted
        self.platform = platform
        self.platforms = tuple(platforms)  # the images of other platforms some target takes: each must be complete too
        self.scanner = ArchiveScanner(expect=None if expected_sha256 else expect)
        self.size = 0
        self._hash = hashlib.sha256() if expected_sha256 else None
        self._gunzip: Inflater | None = None
        self.index: ArchiveIndex | None = None
        self.image: Image | None = None

    @property
    def sha256(self) -> str | None:
        return "sha256:" + self._hash.hexdigest() if self._hash else None

    def __iter__(self) -> Iterator[bytes]:
        held: bytes | memoryview | None = None
        for piece in self._plain() if self.plain else self._as_read():
            if held is not None:
                yield held
            held = piece
        self._check(self._finish)
        if held is not None:
            yield held

    def _as_read(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if not self.size and bytes(chunk[:2]) == GZIP_MAGIC:
                self._gunzip = Inflater("gzip", "the archive")
            self._check(lambda: self._scan(chunk))
            self._account(chunk)
            yield chunk

    def _plain(self) -> Iterator[bytes | memoryview]:
        """The plain tar: chunks unchanged, or, under an outer compression, its output in pieces of at most 1 MiB."""
        head, sniffed = b"", False
        for chunk in self._chunks:
            self._account(chunk)
            if not sniffed:  # decided on the first bytes, as Go's DecompressStream peeks
                head += bytes(chunk)
                if len(head) < SNIFF:
                    continue
                chunk, head, sniffed = head, b"", True
                if (kind := outer_compression(chunk[:SNIFF])) != "none":
                    self._outer = Inflater(kind, "the archive")
            yield from self._pieces(chunk)
        if head:  # a stream shorter than any magic
            yield from self._pieces(head)
        if self._outer is not None:
            self._check(self._outer.finish)

    def _pieces(self, chunk: bytes) -> Iterator[bytes | memoryview]:
        if self._outer is None:
            self._check(lambda: self.scanner.feed(chunk))
            yield chunk
            return
        outputs = self._outer.feed(chunk)
        while True:
            try:
                output = next(outputs)
            except StopIteration:
                return
            except ArchiveError as exc:
                self._check(lambda: _raise(exc))
            view = memoryview(output)
            for start in range(0, len(view), PLAIN_PIECE):
                part = view[start : start + PLAIN_PIECE]
                self._check(lambda: self.scanner.feed(part))
                yield part

    def _account(self, chunk: bytes) -> None:
        if self._hash is not None:
            self._hash.update(chunk)
        self.size += len(chunk)

    def _scan(self, chunk: bytes) -> None:
        if self._gunzip is None:
            self.scanner.feed(chunk)
            return
        for piece in self._gunzip.feed(chunk):
            self.scanner.feed(piece)

    def _finish(self) -> None:
        """At the end of input, before the last chunk is released: everything that needs the whole archive."""
        if self._gunzip is not None:
            self._gunzip.finish()
        index = self.scanner.finish()
        image = index.image(self.platform)
        index.check_complete(self.omitted, self.platform)
        for platform in self.platforms:
            index.check_complete(self.omitted, platform)
        if self.expected_sha256 and self.sha256 != self.expected_sha256:
            raise DigestMismatch(
                f"sha256 is {self.sha256}, the artifact says {self.expected_sha256}; "
                "the file changed or is corrupt, nothing was loaded"
            )
        if self.expected_ids - image.ids():
            raise mismatch(
                "the archive",
                f"image {image.manifest_digest or image.config_digest} (config {image.config_digest})",
                f"{', '.join(sorted(self.expected_ids - image.ids()))} was expected",
                verdict="a different image",
            )
        self.index, self.image = index, image

    def _check(self, step: Callable[[], None]) -> None:
        """Run ``step``; an error it raises names the archive (``where``) first, once."""
        try:
            step()
        except ArchiveError as exc:
            if str(exc).startswith(self.where):
                raise
            raise type(exc)(f"{self.where}: {exc}") from None


# ---------------------------------------------------------------- policy: which bytes each load checks
#
# - A reused archive (a save's path already holds one) hashes every member
#   (``every_member``) and then holds each layer's uncompressed digest against
#   its diff ID (``check_layers``). A fresh save checks the tar, the metadata
#   and the image's identity, and hashes the file once, for the artifact's
#   sha256: the exporting engine checks its layers (a classic store answers
#   500 before the first byte for a layer whose files changed on its disk,
#   "file integrity checksum failed", measured on 20.10 and 28.5).
# - A load checks, before the archive's end is released, what some target
#   leaves to us (``expect_layers``, from the positions each target's plan
#   names in ``Send.unchecked`` and ``Send.unchecked_blobs``); the rest is
#   checked by the engine that registers or unpacks the layer. An artifact's
#   sha256, when promised, covers the whole stream instead.
# - A diff ID, where the target will not check it: the layers a classic store
#   has (it skips them unread), the layers a containerd store will not unpack.
#   It costs an inflation and a second sha256 of every byte: 2.5-4.7x the
#   CLI's client CPU when it was checked for every layer (issue 21).
# - A blob digest, for a ``blobs/`` member bound for a containerd store: it
#   files the blob under the digest of what it got and never compares the
#   two. One sha256 of the compressed bytes (0.56 CPU-s/GiB here). Leaving it
#   to the engine was measured (0.47 against 1.20 CPU-s/GiB for a load) and
#   set aside: a corrupt blob is then found only after the engine has the
#   whole archive, as "content digest ... not found", which is also how its
#   collector racing a load looks, so the archive would be sent again.
# - A node load checks every blob it writes by digest as it writes it.


def _raise(exc: BaseException) -> None:
    raise exc


def every_member(name: str, index: ArchiveIndex) -> Check:
    """Hash every member: a blob against the digest its name says, and each one uncompressed too."""
    digest = "sha256:" + name.rsplit("/", 1)[-1] if name.startswith("blobs/sha256/") else None
    return Check(digest=digest, inflate=True, what="blob")


def check_layers(index: ArchiveIndex, image: Image) -> None:
    """After a full read with :func:`every_member`: each layer's uncompressed digest against its diff ID."""
    for layer in image.layers:
        path = layer.path or ""
        member = index.members.get(index.links.get(path, path))
        found = member.diff_id if member else None
        require_digest(found, layer.diff_id, what=f"layer {path}", claim=DIFF_ID, how=" uncompressed")


def expect_layers(image: Image | None, diff_ids: Sequence[str], positions: AbstractSet[int],
                  blob_positions: AbstractSet[int] = frozenset()) -> Expect | None:
    """What each passing layer must hash to: the checks a target leaves to us (see the policy above).

    A layer at ``positions`` is held against its diff ID (the target records
    it without unpacking it); one at ``blob_positions`` that is a ``blobs/``
    member, against the digest its name and the manifest claim (the target
    files it under the digest of the bytes it got). Every other check is the
    target's own: hashing twice would cost the client CPU the CLI does not
    spend.
    """
    if not diff_ids or not (positions or blob_positions):
        return None
    if image is not None:
        by_name = {
            layer.path: check
            for p, layer in enumerate(image.layers)
            if (check := _check(layer.digest if p in blob_positions else None,
                                layer.diff_id if p in positions else None, layer.path))
        }
        return lambda name, index: by_name.get(name)

    def expect(name: str, index: ArchiveIndex) -> Check | None:
        position = layer_position(name, index, diff_ids)
        if position is None or not (position in positions or position in blob_positions):
            return None
        claimed = "sha256:" + name.rsplit("/", 1)[-1] if position in blob_positions else None
        return _check(claimed, diff_ids[position] if position in positions else None, name)

    return expect


def _check(digest: str | None, diff_id: str | None, path: str | None) -> Check | None:
    """A layer's check, None if nothing is left to check; only a ``blobs/`` member claims a blob digest (a legacy
    ``layer.tar`` is named by nothing)."""
    digest = digest if (path or "").startswith("blobs/") else None
    return Check(digest=digest, diff_id=diff_id) if digest or diff_id else None


def merged(first: Check, second: Check) -> Check:
    """One check that does what both ask (two targets of one stream, each leaving a different check to us)."""
    return Check(digest=first.digest or second.digest, diff_id=first.diff_id or second.diff_id, what=first.what,
                 inflate=first.inflate or second.inflate)


__all__ = [
    "BLOB",
    "DIFF_ID",
    "SIZE",
    "VerifiedArchive",
    "check_layers",
    "every_member",
    "expect_layers",
    "merged",
    "mismatch",
    "refused",
    "require_digest",
    "require_size",
]
