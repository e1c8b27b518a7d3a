"""Tar headers: read as Go's ``archive/tar`` reads them, and written by the one writer artiload has; no I/O.

Go decides a header's format from its magic: ``ustar\\0`` is USTAR (or PAX),
``ustar `` + `` \\0`` is GNU, anything else V7; only USTAR/PAX put the
``prefix`` field before the name (GNU keeps access times there). Numbers are
octal with spaces and NULs trimmed at both ends, or base-256 when the first
byte's top bit is set (all other bits count). Where Python would be more
lenient (``int()`` takes ``0o``, ``_``, ``+`` and whitespace), we refuse.

Writing, every header is one block in the plainest form that carries its
entry: USTAR with octal numbers; a size of 8 GiB or more does not fit 11
octal digits, so that header is GNU (``ustar  \\0``) with the size in
base-256, the only form in which Go's writer puts base-256 numbers, and one
Go's reader (so docker load and containerd's importer), GNU tar, libarchive
and Python's tarfile all read. (Go's writer itself would add a PAX record;
one block per header keeps every member placeable at its header.) Names stay
within the 100-byte name field: a blob's member name is 77 bytes.
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
PAX_TIME_KEYS = ("atime", "mtime", "ctime")
PAX_TIME = re.compile(r"-?[0-9]{1,18}(\.[0-9]{1,30})?")  # what Go's parsePAXTime takes, a little stricter
# Go's readHeader parses these and refuses the header when one is not a number
# (devmajor/devminor only beyond V7); we never use them, but must refuse alike.
NUMBER_FIELDS = (("mode", 100, 108), ("uid", 108, 116), ("gid", 116, 124), ("mtime", 136, 148), ("devmajor", 329, 337), ("devminor", 337, 345))


@dataclass(frozen=True)
class Header:
    """What one header block says, before PAX records or GNU long names amend it."""

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
    prefix = _prefix(block, form)
    if prefix:
        name = f"{prefix}/{name}"
    kind = block[156:157]
    if kind == b"S" or kind in (b"M", b"N", b"V", b"D"):
        raise ArchiveError(f"tar entry {name!r} at byte {offset} is a GNU sparse/multivolume entry, not supported")
    size = number(block[124:136], what="size", offset=offset)
    numbers = NUMBER_FIELDS if form != "v7" else NUMBER_FIELDS[:4]
    for what, start, end in numbers:
        if not _go_numeric_ok(block[start:end]):
            raise ArchiveError(f"corrupt tar header at byte {offset} ({name!r}): {what} {block[start:end]!r} is not a number Go reads")
    return Header(kind=kind, name=name, linkname=_string(block[157:257]), size=size, format=form)


def number(field: bytes, *, what: str, offset: int) -> int:
    """A numeric field: base-256 (GNU, for sizes of 8 GiB and more) or octal."""
    if field[:1] and field[0] & 0x80:
        if field[0] & 0x40:
            raise ArchiveError(f"corrupt tar header at byte {offset}: negative {what}")
        value = int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
        if value >= 1 << 63:
            raise ArchiveError(f"corrupt tar header at byte {offset}: {what} does not fit Go's int64")
        return value
    text = field.strip(b" \x00")
    if not text:
        return 0
    if not OCTAL.fullmatch(text):
        raise ArchiveError(f"corrupt tar header at byte {offset}: bad {what} {field!r}")
    return int(text, 8)


def _prefix(block: bytes, form: str) -> str:
    """The name prefix Go puts before the name: USTAR's; for GNU, none, unless Go takes the block for a pre-1.8 Go one.

    Go's reader parses a GNU header's access and change times (bytes 345-368);
    when either does not parse, it reads the field as a USTAR prefix instead,
    if that is ASCII (golang.org/issue/12594). A crafted header could
    otherwise name one entry for us and another for the engine.
    """
    if form == "ustar":
        return _string(block[345:500])
    if form == "gnu" and not all(_go_numeric_ok(field) for field in (block[345:357], block[357:369]) if field[0]):
        prefix = _string(block[345:500])
        return prefix if prefix.isascii() else ""
    return ""


def _go_numeric_ok(field: bytes) -> bool:
    """Would Go's parseNumeric read ``field`` without error (base-256 within int64, or octal within uint64)?"""
    if field[0] & 0x80:
        value = int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
        if field[0] & 0x40:  # negative: Go inverts the bits first
            value = int.from_bytes(bytes([~field[0] & 0x7F]) + bytes(~b & 0xFF for b in field[1:]), "big")
        return value < 1 << 63
    text = field.strip(b" \x00").split(b"\0", 1)[0]
    return not text or (OCTAL.fullmatch(text) is not None and int(text, 8) < 1 << 64)


def _checksum_ok(block: bytes) -> bool:
    """Go accepts the unsigned or the signed byte sum (old writers summed signed chars)."""
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
    allowed after the last record. GNU sparse keys are refused. Numbers and
    times Go would fail to parse are refused (Go refuses the header); a
    record with an empty value is dropped, as Go's mergePAX keeps the
    header's own field then.
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
        if name in PAX_NUMBER_KEYS and not (DECIMAL.fullmatch(value) and len(value) <= 18):
            raise ArchiveError(f"corrupt pax extended header at byte {offset}: {name} is {value[:40]!r}")
        if name in PAX_TIME_KEYS and not PAX_TIME.fullmatch(value.decode("ascii", "replace")):
            raise ArchiveError(f"corrupt pax extended header at byte {offset}: {name} is {value[:40]!r}")
        records[name] = value.decode("utf-8", "surrogateescape")
    return {key: value for key, value in records.items() if value}


# ---------------------------------------------------------------- writing

OCTAL_SIZE_LIMIT = 8**11  # 8 GiB: the first size 11 octal digits cannot hold
SIZE_LIMIT = (1 << 63) - 1  # Go's Header.Size is an int64
REGULAR, DIRECTORY = b"0", b"5"
END = bytes(2 * BLOCK)  # the end-of-archive marker


def member_header(name: str, size: int, *, kind: bytes = REGULAR, mode: int = 0o644) -> bytes:
    """One header block for an entry of any size: USTAR below 8 GiB, GNU base-256 at and beyond."""
    raw = name.encode()
    if len(raw) > 100:
        raise ArchiveError(f"member name {name!r} is too long for a plain tar header")
    if size < 0:
        raise ArchiveError(f"member {name!r}: negative size {size}")
    if size > SIZE_LIMIT:
        raise ArchiveError(f"member {name!r}: size {size} is larger than a tar reader takes (Go's is an int64)")
    block = bytearray(BLOCK)
    block[0 : len(raw)] = raw
    block[100:108] = b"%07o\0" % mode
    block[108:116] = b"0000000\0"  # uid
    block[116:124] = b"0000000\0"  # gid
    block[124:136] = _size_field(size)
    block[136:148] = b"00000000000\0"  # mtime
    block[156:157] = kind
    block[257:265] = USTAR_MAGIC + b"00" if size < OCTAL_SIZE_LIMIT else GNU_MAGIC + GNU_VERSION
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def _size_field(size: int) -> bytes:
    """Octal when 11 digits hold it; else base-256: the top bit set, the rest big-endian (Go's formatNumeric)."""
    if size < OCTAL_SIZE_LIMIT:
        return b"%011o\0" % size
    return bytes([0x80]) + size.to_bytes(11, "big")


def directory_header(name: str) -> bytes:
    """A directory entry (``name`` ends with ``/``), as exporters write ``blobs/`` before the blobs."""
    return member_header(name, 0, kind=DIRECTORY, mode=0o755)


def padding(size: int) -> bytes:
    """The zeros that fill an entry's data of ``size`` bytes to a whole block."""
    return bytes(-size % BLOCK)


def build_member(name: str, data: bytes, *, mode: int = 0o644) -> bytes:
    """A whole small member, header plus padded data, for one artiload adds to a stream (``manifest.json``)."""
    return member_header(name, len(data), mode=mode) + data + padding(len(data))
