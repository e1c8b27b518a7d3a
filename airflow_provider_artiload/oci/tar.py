"""One tar header block and PAX records, parsed as Go's ``archive/tar`` parses them; no I/O.

Go decides a header's format from its magic: ``ustar\\0`` is USTAR (or PAX),
``ustar `` + `` \\0`` is GNU, anything else V7; only USTAR/PAX put the
``prefix`` field before the name (GNU keeps access times there). Numbers are
octal with spaces and NULs trimmed at both ends, or base-256 when the first
byte's top bit is set (all other bits count). Where Python would be more
lenient (``int()`` takes ``0o``, ``_``, ``+`` and whitespace), we refuse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from airflow_provider_artiload.exceptions import ArchiveError

BLOCK = 512
USTAR_MAGIC = b"ustar\x00"
GNU_MAGIC = b"ustar "
GNU_VERSION = b" \x00"
STAR_TRAILER = b"tar\x00"
OCTAL = re.compile(rb"[0-7]+")
DECIMAL = re.compile(rb"[0-9]+")
PAX_TEXT_KEYS = ("path", "linkpath", "uname", "gname")
PAX_NUMBER_KEYS = ("size", "uid", "gid")


@dataclass(frozen=True)
class Header:
    kind: bytes
    name: str
    linkname: str
    size: int
    format: str  # ustar | gnu | v7


def parse_header(block: bytes, *, offset: int) -> Header:
    """One 512-byte header block; ArchiveError names the byte offset when Go would refuse it too (or might differ)."""
    if not _checksum_ok(block):
        if offset == 0:
            raise ArchiveError("not a tar archive (is it compressed or some other format?)")
        raise ArchiveError(f"corrupt tar header at byte {offset}")
    magic, version = block[257:263], block[263:265]
    if magic == USTAR_MAGIC:
        if block[508:512] == STAR_TRAILER:
            raise ArchiveError(f"tar header at byte {offset} is in the star format, which is not supported")
        form = "ustar"
    elif magic == GNU_MAGIC and version == GNU_VERSION:
        form = "gnu"
    else:
        form = "v7"
    name = _string(block[0:100])
    if form == "ustar":
        prefix = _string(block[345:500])
        if prefix:
            name = f"{prefix}/{name}"
    kind = block[156:157]
    if kind == b"S" or kind in (b"M", b"N", b"V", b"D"):
        raise ArchiveError(f"tar entry {name!r} at byte {offset} is a GNU sparse/multivolume entry, not supported")
    size = number(block[124:136], what="size", offset=offset)
    return Header(kind=kind, name=name, linkname=_string(block[157:257]), size=size, format=form)


def number(field: bytes, *, what: str, offset: int) -> int:
    """A numeric field: base-256 (GNU, for sizes of 8 GiB and more) or octal."""
    if field[:1] and field[0] & 0x80:
        if field[0] & 0x40:
            raise ArchiveError(f"corrupt tar header at byte {offset}: negative {what}")
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.strip(b" \x00")
    if not text:
        return 0
    if not OCTAL.fullmatch(text):
        raise ArchiveError(f"corrupt tar header at byte {offset}: bad {what} {field!r}")
    return int(text, 8)


def _checksum_ok(block: bytes) -> bool:
    text = block[148:156].strip(b" \x00")
    if not OCTAL.fullmatch(text):
        return False
    stored = int(text, 8)
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    signed = sum(b - 256 if b > 127 else b for b in block[:148] + block[156:]) + 8 * 32
    return stored in (unsigned, signed)


def _string(raw: bytes) -> str:
    """Go's parseString: up to the first NUL."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def parse_pax(data: bytes, *, offset: int) -> dict[str, str]:
    """PAX records ``"%d %s=%s\\n"``, strictly: a length that does not frame its record is an error.

    A later record for the same key wins, as in Go; like Go, no padding is
    allowed after the last record. GNU sparse keys are refused.
    """
    records: dict[str, str] = {}
    rest = data
    while rest:
        length_text, space, _ = rest.partition(b" ")
        if not space or not DECIMAL.fullmatch(length_text) or len(length_text) > 8:
            raise ArchiveError(f"corrupt pax extended header at byte {offset}: bad record length {length_text[:20]!r}")
        length = int(length_text)
        if length < len(length_text) + 4 or length > len(rest):
            raise ArchiveError(f"corrupt pax extended header at byte {offset}: record length {length} does not fit")
        record, rest = rest[len(length_text) + 1 : length], rest[length:]
        if not record.endswith(b"\n"):
            raise ArchiveError(f"corrupt pax extended header at byte {offset}: a record does not end with a newline")
        key, equals, value = record[:-1].partition(b"=")
        if not equals or not key or b"\0" in key:
            raise ArchiveError(f"corrupt pax extended header at byte {offset}: bad record {record[:40]!r}")
        name = key.decode("utf-8", "surrogateescape")
        if name.startswith("GNU.sparse"):
            raise ArchiveError(f"pax header at byte {offset} describes a sparse file, which is not supported")
        if name in PAX_TEXT_KEYS and b"\0" in value:
            raise ArchiveError(f"corrupt pax extended header at byte {offset}: NUL in {name}")
        if name in PAX_NUMBER_KEYS and not DECIMAL.fullmatch(value):
            raise ArchiveError(f"corrupt pax extended header at byte {offset}: {name} is {value[:40]!r}")
        records[name] = value.decode("utf-8", "surrogateescape")
    return records


def build_member(name: str, data: bytes, *, mode: int = 0o644) -> bytes:
    """A USTAR header plus padded data, for a small member artiload adds to a stream (``manifest.json``)."""
    if len(name.encode()) > 100:
        raise ArchiveError(f"member name {name!r} is too long for a plain tar header")
    block = bytearray(BLOCK)
    block[0 : len(name.encode())] = name.encode()
    block[100:108] = b"%07o\0" % mode
    block[108:116] = b"0000000\0"
    block[116:124] = b"0000000\0"
    block[124:136] = b"%011o\0" % len(data)
    block[136:148] = b"00000000000\0"
    block[156:157] = b"0"
    block[257:265] = USTAR_MAGIC + b"00"
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block) + data + bytes(-len(data) % BLOCK)
