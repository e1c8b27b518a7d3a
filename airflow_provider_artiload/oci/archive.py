"""Read an image archive as it streams past, as Go's ``archive/tar`` will, without buffering it.

:class:`ArchiveScanner` is fed the tarball's bytes in chunks (any sizes) and
keeps only tar headers and the small JSON members (``manifest.json``,
``index.json``, manifests, configs: recognised by their first byte, so
archives of many small layer blobs are not mistaken for metadata). That is
enough to describe the image (:mod:`airflow_provider_artiload.oci.metadata`), to
refuse an empty, garbage, truncated or incomplete archive *before* the
engine sees its last byte, and to check members against digests.

Where Python's reading and the engine's Go reader (``archive/tar``, then
moby's untar or containerd's importer, both of which ``path.Clean`` names)
could disagree, the archive is refused: every header is parsed as Go parses
it (format-specific prefix, strict octal and base-256 numbers, PAX records
``size``/``path``/``linkpath``, GNU long names and links, header-only types
that carry no data), and anything Go would resolve differently (duplicate
names, unsupported entry types, sparse files, data after the end marker,
links leaving the archive) is an error.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_artiload.oci.tar import BLOCK, Header, parse_header, parse_pax
from airflow_provider_artiload.oci.digests import Check, MemberHasher
from airflow_provider_artiload.exceptions import ArchiveError
from airflow_provider_artiload.oci.image import Image
from airflow_provider_artiload.oci.links import RawLinks, link_target, resolve_links
from airflow_provider_artiload.oci.metadata import Metadata, image_from_archive

METADATA_LIMIT = 16 << 20  # all JSON members together
JSON_MEMBER_LIMIT = 4 << 20  # one JSON member
EXTENDED_LIMIT = 1 << 20  # one PAX or GNU long-name header, as Go's reader limits it
EXTENDED_RUN_LIMIT = 3 << 20  # all extended headers before one entry: a PAX header, a long name and a long link
MEMBER_LIMIT = 100_000  # entries; a real image archive has a few hundred
DATA_TYPES = (b"0", b"\0")
LINK_TYPES = (b"1", b"2")
HEADER_ONLY = (b"1", b"2", b"3", b"4", b"5", b"6")  # Go reads no data for these, whatever the size field says
EXTENDED = (b"x", b"g", b"L", b"K")
JSON_START = (b"{", b"[")
JSON_SPACE = b" \t\r\n"  # what Go's encoding/json (and Python's) skip before a value


@dataclass
class Member:
    """One regular file in the archive."""

    name: str
    size: int
    offset: int  # of its data in the archive
    header_offset: int = 0  # of its first (extended) header
    sha256: str | None = None
    diff_id: str | None = None
    head: bytes = b""  # the first bytes: what compression a blob uses


@dataclass
class ArchiveIndex:
    """What a complete scan learned: members, links and the small JSON files."""

    members: dict[str, Member] = field(default_factory=dict)
    metadata: dict[str, bytes] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)  # link name -> the member it resolves to
    _images: dict[str | None, Image] = field(default_factory=dict, repr=False)

    def has(self, name: str) -> bool:
        """A regular member, or a link to one (older saves link a repeated layer to its first copy)."""
        return name in self.members or self.links.get(name) in self.members

    def image(self, platform: str | None = None) -> Image:
        """The image the archive holds (for ``platform``, when it holds several)."""
        if platform not in self._images:
            resolved = {**self.members, **{k: self.members[v] for k, v in self.links.items() if v in self.members}}
            meta = Metadata(
                self.metadata,
                sizes={k: m.size for k, m in resolved.items()},
                heads={k: m.head for k, m in resolved.items()},
            )
            self._images[platform] = image_from_archive(meta, platform=platform)
        return self._images[platform]

    def check_complete(self, omitted: frozenset[str] = frozenset(), platform: str | None = None) -> None:
        """Every blob the image needs is in the archive, or was left out on purpose (``omitted``)."""
        image = self.image(platform)
        needed = [image.config_path or "", *(layer.path or "" for layer in image.layers)]
        for name in needed:
            if not self.has(name) and name not in omitted:
                raise ArchiveError(f"the archive's metadata names {name!r}, which the archive does not contain")


Expect = Callable[[str, ArchiveIndex], "Check | None"]  # (member, what was seen so far) -> what it must hash to
Keep = Callable[[str, ArchiveIndex], bool]  # (member, what was seen so far) -> forward it?
AtEnd = Callable[[ArchiveIndex], bytes]  # members to insert before the end-of-archive marker (keep mode)


class ArchiveScanner:
    """A push parser for (uncompressed) tar streams.

    ``expect`` names what a member must hash to (:class:`Check`); a mismatch
    raises DigestMismatch as soon as that member ends. ``keep`` turns the
    scanner into a filter: :meth:`feed` then returns the pieces to forward,
    leaving out the members ``keep`` rejects (with their extended headers),
    and ``at_end`` may add members before the end marker. Both are asked at
    a member's header, with the index of what came before it.
    """

    def __init__(self, *, expect: Expect | None = None, keep: Keep | None = None, at_end: AtEnd | None = None) -> None:
        self.index = ArchiveIndex()
        self.offset = 0  # bytes consumed
        self._expect = expect
        self._keep = keep
        self._at_end = at_end
        self._header = bytearray()
        self._remaining = 0  # data bytes left in the current entry
        self._padding = 0
        self._kind = b"0"
        self._member: Member | None = None
        self._hasher: MemberHasher | None = None
        self._capture: bytearray | None = None
        self._sniff = False  # decide at the first data byte whether the member is JSON
        self._extended: dict[str, str] = {}  # PAX records for the next entry
        self._long_name: str | None = None
        self._long_link: str | None = None
        self._first_header = 0
        self._extended_run = 0  # bytes of extended headers since the last entry
        self._pending = bytearray()  # extended headers waiting for the entry they describe
        self._forward = True
        self._zeros = 0  # end-of-archive blocks seen
        self._captured = 0
        self._entries = 0
        self._raw_links: RawLinks = {}

    @property
    def ended(self) -> bool:
        return self._zeros > 0

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
                    self._end_entry()
            elif self._zeros:
                if any(view):
                    raise ArchiveError(f"data after the end-of-archive marker at byte {self.offset}")
                self.offset += len(view)
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
                    self._start_entry(header, out)
        return out

    def finish(self) -> ArchiveIndex:
        """Call at end of input: raise unless the archive ended cleanly; returns the index."""
        if self.offset == 0:
            raise ArchiveError("the archive is empty")
        if self._remaining or self._header or self._padding or self._pending:
            where = f" inside {self._member.name!r}" if self._member and self._remaining else ""
            raise ArchiveError(f"the archive is truncated at byte {self.offset}{where}")
        if not self._zeros and not self.index.members:
            raise ArchiveError("not a tar archive")
        self._check_links()
        return self.index

    def skippable(self) -> int:
        """Bytes of the current member's data that need not be read at all (a file reader may seek)."""
        if self._keep is not None or self._member is None or not self._member.head:
            return 0
        if self._capture is not None or self._sniff or self._hasher is not None:
            return 0
        return self._remaining + self._padding

    def skip(self) -> None:
        """Account for :meth:`skippable` bytes the caller seeked over."""
        self.offset += self._remaining + self._padding
        self._remaining = self._padding = 0
        self._end_entry()

    def wanted(self) -> int:
        """How many bytes to read next so that no decision point is passed (for :meth:`skippable`)."""
        if self._remaining or self._padding:
            if self._member is not None and not self._member.head:
                return min(BLOCK, self._remaining + self._padding)
            return min(self._remaining + self._padding, 1 << 20)
        return BLOCK - len(self._header) if not self._zeros else 1 << 16

    def end_pieces(self) -> list[bytes]:
        """For a filter over an archive without an end marker: what ``at_end`` adds, then the marker."""
        if self._zeros or self._keep is None:
            return []
        extra = self._at_end(self.index) if self._at_end else b""
        return [extra, bytes(2 * BLOCK)] if extra else []

    def _emit(self, out: list[bytes | memoryview], piece: bytes | memoryview) -> None:
        if self._keep is None:
            return
        if self._kind in EXTENDED and not self._zeros:
            self._pending += piece
        elif self._forward:
            out.append(piece)

    def _start_entry(self, block: bytes, out: list[bytes | memoryview]) -> None:
        if block == bytes(BLOCK):
            self._zeros += 1
            if self._pending or self._long_name or self._extended:
                raise ArchiveError(f"an extended header at byte {self._first_header} describes no entry")
            if self._zeros == 1 and self._at_end is not None and self._keep is not None:
                out.append(self._at_end(self.index))
            self._kind, self._forward = b"5", True
            self._emit(out, block)
            return
        header = parse_header(block, offset=self.offset - BLOCK)
        self._entries += 1
        if self._entries > MEMBER_LIMIT:
            raise ArchiveError(f"the archive has more than {MEMBER_LIMIT} entries; an image archive has far fewer")
        if not (self._pending or self._extended or self._long_name or self._long_link or self._extended_run):
            self._first_header = self.offset - BLOCK
        self._kind = header.kind
        self._member, self._hasher, self._capture, self._sniff = None, None, None, False
        if header.kind in EXTENDED:
            self._start_extended(header, block, out)
            return
        name = self._long_name if self._long_name is not None else self._extended.get("path", header.name)
        link = self._long_link if self._long_link is not None else self._extended.get("linkpath", header.linkname)
        size = _pax_size(self._extended, header.size)
        self._long_name, self._long_link, self._extended, self._extended_run = None, None, {}, 0
        kind = header.kind
        if kind == b"\0" and name.endswith("/"):
            kind = b"5"  # Go reads an old-style regular entry named "x/" as a directory
        self._kind = kind
        data = 0 if kind in HEADER_ONLY else size
        self._remaining, self._padding = data, -data % BLOCK
        clean = self._entry(kind, _clean(name), link, data, raw_name=name)
        self._forward = self._keep(clean, self.index) if self._keep and clean else True
        if self._forward and self._keep is not None:
            out.append(bytes(self._pending))
            out.append(block)
        self._pending.clear()
        if not data:
            self._end_entry()

    def _start_extended(self, header: Header, block: bytes, out: list[bytes | memoryview]) -> None:
        if header.size > EXTENDED_LIMIT:
            raise ArchiveError(f"tar extended header of {header.size} bytes at byte {self.offset - BLOCK} is too large")
        self._extended_run += BLOCK + header.size
        if self._extended_run > EXTENDED_RUN_LIMIT:
            raise ArchiveError(
                f"tar extended headers from byte {self._first_header} add up to more than {EXTENDED_RUN_LIMIT >> 20} MiB "
                "before any entry; an archive needs one of each kind"
            )
        self._remaining, self._padding = header.size, -header.size % BLOCK
        self._capture = bytearray()
        self._emit(out, block)
        if not header.size:
            self._end_entry()

    def _entry(self, kind: bytes, name: str, link: str, size: int, *, raw_name: str = "") -> str:
        """Record an entry; returns its cleaned name ("" for the archive root)."""
        if name in (".", ""):
            if kind != b"5":
                raise ArchiveError("an archive entry without a name")
            return ""
        if kind not in DATA_TYPES + HEADER_ONLY:
            raise ArchiveError(f"entry {name!r} has tar type {kind!r}, which docker load does not accept")
        if kind in DATA_TYPES or kind in LINK_TYPES:
            if name in self.index.members or name in self.index.links:
                raise ArchiveError(f"the archive holds {name!r} twice; the engine would keep the last one")
        if kind in DATA_TYPES:
            if raw_name.endswith("/"):
                raise ArchiveError(f"regular file {raw_name!r} has a directory's name; the engine cannot create it")
            self._add_member(name, size)
        elif kind in LINK_TYPES:
            symbolic = kind == b"2"
            self.index.links[name] = link_target(name, link, symbolic=symbolic)
            self._raw_links[name] = (link, symbolic)
        return name

    def _add_member(self, name: str, size: int) -> None:
        member = Member(name=name, size=size, offset=self.offset, header_offset=self._first_header)
        self.index.members[name] = member
        self._member = member
        check = self._expect(name, self.index) if self._expect else None
        if check is not None:
            self._hasher = MemberHasher(check, name)
        if name in ("manifest.json", "index.json") and size > JSON_MEMBER_LIMIT:
            raise ArchiveError(f"{name} is {size} bytes; an image archive's JSON files are small")
        if 0 < size <= JSON_MEMBER_LIMIT and _may_be_metadata(name):
            self._sniff = True

    def _consume_data(self, piece: memoryview) -> None:
        if self._member is not None and not self._member.head:
            self._member.head = piece[:4].tobytes()
        if self._sniff:
            # JSON may start after whitespace (Go reads it so): capture from the first byte until one that is not
            # blank decides; a member only blank so far stays captured (it is at most JSON_MEMBER_LIMIT).
            if self._capture is None:
                self._capture = bytearray()
            first = piece[:64].tobytes().lstrip(JSON_SPACE)[:1] or bytes(piece).lstrip(JSON_SPACE)[:1]
            if first:
                self._sniff = False
                if first in JSON_START:
                    self._captured += self._member.size if self._member is not None else 0
                    if self._captured > METADATA_LIMIT:
                        raise ArchiveError(f"the archive's JSON members exceed {METADATA_LIMIT >> 20} MiB")
                else:
                    self._capture = None
        if self._hasher is not None:
            self._hasher.update(piece)
        if self._capture is not None:
            self._capture += piece
        self._remaining -= len(piece)

    def _end_entry(self) -> None:
        if self._kind in (b"L", b"K") and self._capture is not None:
            text = bytes(self._capture).split(b"\0", 1)[0].decode("utf-8", "surrogateescape") or None  # Go ignores ""
            if self._kind == b"L":
                self._long_name = text
            else:
                self._long_link = text
        elif self._kind == b"x" and self._capture is not None:
            self._extended = parse_pax(bytes(self._capture), offset=self._first_header)
        elif self._kind == b"g" and self._capture is not None:
            parse_pax(bytes(self._capture), offset=self._first_header)  # valid, but Go applies it to nothing
            # Go returns a global header as an entry of its own: a PAX header or GNU long name or link read
            # before it is forgotten, so the next entry keeps its own name. (A filter drops them all.)
            self._extended, self._long_name, self._long_link, self._extended_run = {}, None, None, 0
            self._pending.clear()
        elif self._member is not None:
            if self._hasher is not None:
                self._member.sha256, self._member.diff_id = self._hasher.finish()
            if self._capture is not None:
                # a member blank to its end is kept as one blank: invalid JSON, as Go finds it, in bounded memory
                self.index.metadata[self._member.name] = b" " if self._sniff else bytes(self._capture)
        self._capture, self._hasher, self._member = None, None, None

    def _check_links(self) -> None:
        """Every link resolves, through any chain of links and symlinked directories, to a name inside the archive."""
        self.index.links.update(resolve_links(self._raw_links))


def _may_be_metadata(name: str) -> bool:
    """Names whose small members might be JSON worth keeping (decided for sure by their first byte)."""
    return name.startswith("blobs/") or name.endswith((".json", "/json")) or name in ("repositories", "oci-layout")


def _pax_size(records: dict[str, str], size: int) -> int:
    """A PAX ``size`` record overrides the header's size field, as in Go."""
    if "size" not in records:
        return size
    value = records["size"]
    if not value.isascii() or not value.isdigit():
        raise ArchiveError(f"corrupt pax size record {value[:40]!r}")
    return int(value)


def _clean(name: str) -> str:
    """The name as moby and containerd use it (``path.Clean``); refuses what could land outside."""
    if name.startswith("/") or ".." in name.split("/") or "\0" in name:
        raise ArchiveError(f"unsafe member name {name!r} in the archive (absolute or contains '..')")
    return posixpath.normpath(name) if name else name


def describe(index: ArchiveIndex, platform: str | None = None) -> dict[str, Any]:
    """The artifact fields a scanned archive gives."""
    image = index.image(platform)
    return {**image.describe(), "repo_tags": list(image.repo_tags), "layers": image.diff_ids}
