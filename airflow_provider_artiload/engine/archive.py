"""Read a docker-archive as it streams past, without I/O and without buffering it.

:class:`ArchiveScanner` is fed the tarball's bytes in chunks (any sizes) and
keeps only tar headers, the small JSON members (manifest, configs) and, when
asked, a sha256 of every regular member. That is enough to reject an empty,
garbage, truncated or manifest-less archive *before* the engine sees its last
byte, and to check each layer against its diff ID.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

from airflow_provider_artiload.exceptions import ArchiveError, DigestMismatch

BLOCK = 512
METADATA_LIMIT = 16 << 20  # all JSON members together; more is not a docker-archive
SMALL_BLOB = 1 << 20
PAX_LIMIT = 1 << 20


@dataclass
class Member:
    """One regular file in the archive."""

    name: str
    size: int
    offset: int  # of its data in the archive
    sha256: str | None = None


@dataclass
class ArchiveIndex:
    """What a complete scan learned: members, the manifest and the small JSON files."""

    members: dict[str, Member] = field(default_factory=dict)
    metadata: dict[str, bytes] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)  # link name -> the member it resolves to

    def has(self, name: str) -> bool:
        """A regular member, or a link to one (docker save links a repeated layer to its first copy)."""
        return name in self.members or self.links.get(name) in self.members

    @property
    def manifest(self) -> list[dict[str, Any]]:
        raw = self.metadata.get("manifest.json")
        if raw is None:
            raise ArchiveError("not a docker-archive: it has no manifest.json")
        try:
            manifest = json.loads(raw)
        except ValueError as exc:
            raise ArchiveError(f"manifest.json is not valid JSON: {exc}") from None
        if not isinstance(manifest, list) or not manifest:
            raise ArchiveError("manifest.json lists no images")
        return manifest

    def image_ids(self) -> list[str]:
        """The image IDs (config digests) the manifest names, in order."""
        ids = []
        for entry in self.manifest:
            config = entry.get("Config", "")
            raw = self.metadata.get(config)
            if raw is None:
                raise ArchiveError(f"manifest.json names config {config!r}, which the archive does not contain")
            ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        return ids

    @property
    def repo_tags(self) -> list[str]:
        """The tags the archive's (first) image carries."""
        return list(self.manifest[0].get("RepoTags") or [])

    def check_complete(self, omitted: frozenset[str] = frozenset()) -> None:
        """Every file the manifest names is in the archive, or was left out on purpose (``omitted``)."""
        for entry in self.manifest:
            for name in [entry.get("Config", ""), *entry.get("Layers", [])]:
                if not self.has(name) and name not in omitted:
                    raise ArchiveError(f"manifest.json names {name!r}, which the archive does not contain")


Expect = Callable[[str, "ArchiveIndex"], "str | None"]  # (member, what was seen so far) -> digest it must have
Keep = Callable[[str, "ArchiveIndex"], bool]  # (member, what was seen so far) -> forward it?


class ArchiveScanner:
    """A push parser for (uncompressed) tar streams.

    ``expect`` names the digest a member must have (a layer's diff ID); a
    mismatch raises DigestMismatch as soon as that member ends. ``keep``
    turns the scanner into a filter: :meth:`feed` then returns the pieces to
    forward, leaving out the members ``keep`` rejects (with their extended
    headers). Both are asked at a member's header, with the index of what
    came before it (a layer's small ``json`` precedes its ``layer.tar``).
    """

    def __init__(self, *, expect: Expect | None = None, keep: Keep | None = None) -> None:
        self.index = ArchiveIndex()
        self.offset = 0  # bytes consumed
        self._expect = expect
        self._keep = keep
        self._header = bytearray()
        self._remaining = 0  # data bytes left in the current member
        self._padding = 0
        self._member: Member | None = None
        self._expected: str | None = None
        self._hasher: Any = None
        self._capture: bytearray | None = None
        self._kind = b"0"
        self._long_name: str | None = None
        self._pax_path: str | None = None
        self._pending = bytearray()  # extended headers waiting for the member they describe
        self._forward = True
        self._ended = False
        self._captured = 0

    def feed(self, data: bytes | memoryview) -> list[bytes | memoryview]:
        """Consume ``data``; with ``keep``, return what to forward (zero-copy slices where possible)."""
        view = memoryview(data).cast("B")
        out: list[bytes | memoryview] = []
        while view:
            if self._remaining or self._padding:
                step = min(self._remaining + self._padding, len(view))
                piece = view[:step]
                data_part = piece[: min(self._remaining, step)]
                if data_part:
                    self._consume_data(data_part)
                self._padding -= step - len(data_part)
                self.offset += step
                self._emit(out, piece)
                view = view[step:]
                if not self._remaining and not self._padding:
                    self._end_member()
            elif self._ended:
                self.offset += len(view)  # trailing zero records after the end marker
                self._emit(out, view)
                break
            else:
                need = BLOCK - len(self._header)
                self._header += view[:need]
                self.offset += min(need, len(view))
                view = view[need:]
                if len(self._header) == BLOCK:
                    header = bytes(self._header)
                    self._header.clear()
                    self._start_member(header, out)
        return out

    def finish(self) -> ArchiveIndex:
        """Call at end of input: raise unless the archive ended cleanly."""
        if self.offset == 0:
            raise ArchiveError("the archive is empty")
        if self._remaining or self._header or self._padding:
            where = f" inside {self._member.name!r}" if self._member and self._remaining else ""
            raise ArchiveError(f"the archive is truncated at byte {self.offset}{where}")
        if not self._ended and not self.index.members:
            raise ArchiveError("not a tar archive")
        return self.index

    def _emit(self, out: list[bytes | memoryview], piece: bytes | memoryview) -> None:
        if self._keep is None:
            return
        if self._kind in (b"L", b"x") and not self._ended:
            self._pending += piece
        elif self._forward:
            out.append(piece)

    def _start_member(self, header: bytes, out: list[bytes | memoryview]) -> None:
        if header == bytes(BLOCK):
            self._ended, self._forward = True, True  # end-of-archive marker; one is enough
            self._emit(out, header)
            return
        if not _checksum_ok(header):
            if self.offset == BLOCK:
                raise ArchiveError("not a tar archive (is it compressed or some other format?)")
            raise ArchiveError(f"corrupt tar header at byte {self.offset - BLOCK}")
        kind = header[156:157] or b"0"
        size = _number(header[124:136])
        name = self._long_name or self._pax_path or _name(header)
        self._kind, self._remaining = kind, size
        self._padding = -size % BLOCK
        self._member, self._hasher, self._capture, self._expected = None, None, None, None
        if kind in (b"L", b"x"):
            if size > PAX_LIMIT:
                raise ArchiveError(f"tar extended header of {size} bytes at byte {self.offset} is too large")
            self._capture = bytearray()
            self._emit(out, header)
            return
        if kind == b"g":
            self._forward = True
            self._emit(out, header)
            if not size:
                self._end_member()
            return
        self._long_name, self._pax_path = None, None
        _check_name(name)
        if kind in (b"0", b"\0", b"7"):
            member = Member(name=name, size=size, offset=self.offset)
            self._expected = self._expect(name, self.index) if self._expect else None
            self.index.members[name] = member
            self._member = member
            if self._expected:
                self._hasher = hashlib.sha256()
            if _is_metadata(name, size):
                self._captured += size
                if size > METADATA_LIMIT or self._captured > METADATA_LIMIT:
                    raise ArchiveError(f"{name} is {size} bytes; a docker-archive's JSON files are small")
                self._capture = bytearray()
        elif kind in (b"1", b"2"):
            self.index.links[name] = _resolve_link(name, _text(header[157:257]), symbolic=kind == b"2")
        self._forward = self._keep(name, self.index) if self._keep else True
        if self._forward and self._keep is not None:
            out.append(bytes(self._pending))
            out.append(header)
        self._pending.clear()
        if not size:
            self._end_member()

    def _consume_data(self, piece: memoryview) -> None:
        if self._hasher is not None:
            self._hasher.update(piece)
        if self._capture is not None:
            self._capture += piece
        self._remaining -= len(piece)

    def _end_member(self) -> None:
        if self._kind == b"L" and self._capture is not None:
            self._long_name = bytes(self._capture).rstrip(b"\0").decode("utf-8", "surrogateescape")
        elif self._kind == b"x" and self._capture is not None:
            self._pax_path = _pax_path(bytes(self._capture))
        elif self._member is not None:
            if self._hasher is not None:
                self._member.sha256 = "sha256:" + self._hasher.hexdigest()
                if self._member.sha256 != self._expected:
                    raise DigestMismatch(
                        f"layer {self._member.name} has sha256 {self._member.sha256}, "
                        f"but the image config says its diff ID is {self._expected} (corrupt layer)"
                    )
            if self._capture is not None:
                self.index.metadata[self._member.name] = bytes(self._capture)
        self._capture, self._hasher, self._member = None, None, None


def _is_metadata(name: str, size: int) -> bool:
    """JSON members; in OCI-layout archives configs are small ``blobs/sha256/`` files."""
    if name.endswith((".json", "/json")) or name in ("repositories", "oci-layout"):
        return True
    return name.startswith("blobs/sha256/") and size <= SMALL_BLOB


def _checksum_ok(header: bytes) -> bool:
    try:
        stored = _number(header[148:156])
    except ArchiveError:
        return False
    unsigned = sum(header[:148]) + 8 * 32 + sum(header[156:])
    return stored == unsigned


def _number(field_bytes: bytes) -> int:
    if field_bytes[:1] and field_bytes[0] & 0x80:  # GNU base-256 for sizes >= 8 GiB
        return int.from_bytes(field_bytes[1:], "big")
    text = field_bytes.rstrip(b"\0 ").lstrip(b" ")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise ArchiveError(f"corrupt tar header: bad number {field_bytes!r}") from None


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _name(header: bytes) -> str:
    name = _text(header[0:100])
    if header[257:262] == b"ustar" and header[345]:
        name = _text(header[345:500]) + "/" + name
    return name


def _pax_path(records: bytes) -> str | None:
    path = None
    while records:
        length, _, rest = records.partition(b" ")
        try:
            size = int(length)
        except ValueError:
            raise ArchiveError("corrupt pax extended header") from None
        record = rest[: size - len(length) - 2]
        key, _, value = record.partition(b"=")
        if key == b"path":
            path = value.decode("utf-8", "surrogateescape")
        records = records[size:]
    return path


def _check_name(name: str) -> None:
    parts = name.split("/")
    if name.startswith("/") or ".." in parts:
        raise ArchiveError(f"unsafe member name {name!r} in the archive (absolute or contains '..')")


def _resolve_link(name: str, target: str, *, symbolic: bool) -> str:
    """The member a link names (a symlink relative to its directory), refused if it leaves the archive."""
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name) if symbolic else "", target))
    if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
        raise ArchiveError(f"unsafe link {name!r} -> {target!r} in the archive (points outside it)")
    return resolved
