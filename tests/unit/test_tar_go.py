"""The scanner reads tar as Go's archive/tar (and moby's untar, containerd's importer) will, or refuses.

Each case is a header Go reads one way and a lenient reader (Python's
tarfile, the scanner before) another: a crafted archive could then show us
image X while the engine loads Y. Headers are built byte by byte here.

The last part asks Go itself (``go/tarlist.go``, built once per run; without
``go`` it skips, or with CI=true fails: tests/unit/golister.py): what the one tar writer writes, Go reads as meant, in
the format meant; and on the crafted names, Go and the scanner agree.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile

import pytest

from airflow_provider_artiload.oci.archive import ArchiveScanner
from airflow_provider_artiload.oci.tar import (
    OCTAL_SIZE_LIMIT,
    build_member,
    directory_header,
    member_header,
    number,
    padding,
    parse_header,
    parse_pax,
)
from airflow_provider_artiload.exceptions import ArchiveError
from tests.unit.archives import scan
from tests.unit.golister import go_lister  # noqa: F401  (a fixture)

BLOCK = 512


def header(name: str = "f", *, size: int = 0, kind: bytes = b"0", linkname: str = "", magic: bytes = b"ustar\x0000",
           prefix: bytes = b"", size_field: bytes | None = None) -> bytes:
    block = bytearray(BLOCK)
    block[0 : len(name)] = name.encode()
    block[100:108] = b"0000644\0"
    block[108:116] = block[116:124] = b"0000000\0"
    block[124:136] = size_field if size_field is not None else b"%011o\0" % size
    block[136:148] = b"00000000000\0"
    block[156:157] = kind
    block[157 : 157 + len(linkname)] = linkname.encode()
    block[257:265] = magic
    block[345 : 345 + len(prefix)] = prefix
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def member(name: str, data: bytes, **kw) -> bytes:
    return header(name, size=len(data), **kw) + data + bytes(-len(data) % BLOCK)


def pax(records: bytes, kind: bytes = b"x") -> bytes:
    return member("PaxHeaders/x", records, kind=kind)


END = bytes(2 * BLOCK)


def rec(key: str, value: str) -> bytes:
    """One well-formed PAX record: the length counts itself."""
    body = f" {key}={value}\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return f"{length}{body}".encode()


def test_the_prefix_field_counts_for_ustar_only_not_for_gnu():
    ustar = scan(member("name", b"x", prefix=b"dir") + END)
    assert list(ustar.members) == ["dir/name"]
    gnu = scan(member("name", b"x", magic=b"ustar  \0", prefix=b"00000000017\0" + b"0000000001\0\0") + END)  # GNU times
    assert list(gnu.members) == ["name"]
    legacy = scan(member("name", b"x", magic=b"ustar  \0", prefix=b"12atime") + END)  # times Go cannot read: a pre-1.8 Go prefix
    assert list(legacy.members) == ["12atime/name"]
    v7 = scan(member("name", b"x", magic=bytes(8), prefix=b"dir") + END)
    assert list(v7.members) == ["name"]


def test_pax_size_overrides_the_header_size_as_in_go():
    data = b"y" * 1000
    archive = pax(rec("size", "1000")) + header("big", size=0) + data + bytes(-len(data) % BLOCK) + END
    index = scan(archive)
    assert index.members["big"].size == 1000


@pytest.mark.parametrize(
    "records",
    [
        b"0 path=x\n",  # a zero length looped forever before
        b"3 path=x\n",
        b"99 path=x\n",  # longer than the header
        b"abc path=x\n",
        b"+11 path=x\n",
        b"1_0 path=x\n",
        b" 10 path=x\n",
        b"9 pathx\n\n",  # no '='
        b"9 =value\n",  # empty key
        b"10 path=x",  # no newline
        rec("path", "x\0"),  # NUL in a path
        rec("size", "-1"),
        rec("size", "0x10"),
        rec("uid", "1e3"),
        rec("path", "x") + b"\0\0",  # padding Go does not allow
        rec("GNU.sparse.map", "0,1"),
    ],
)
def test_malformed_pax_records_are_refused(records):
    with pytest.raises(ArchiveError, match="pax"):
        scan(pax(records) + member("f", b"x") + END)


def test_pax_records_later_key_wins_and_unknown_keys_are_ignored():
    records = rec("path", "a") + rec("path", "b") + rec("uname", "me") + rec("comment", "hi")
    assert parse_pax(records, offset=0) == {"path": "b", "uname": "me", "comment": "hi"}


def test_pax_path_and_gnu_long_names_rename_the_next_entry():
    long = "d" * 150 + "/manifest-like.txt"
    pax_data = rec("path", long)
    assert scan(pax(pax_data) + member("short", b"x") + END).members.keys() == {long}
    assert scan(member("././@LongLink", long.encode() + b"\0", kind=b"L") + member("short", b"x") + END).members.keys() == {long}


def test_global_pax_headers_apply_to_nothing_as_in_go():
    index = scan(pax(rec("path", "evil.txt"), kind=b"g") + member("real", b"x") + END)
    assert list(index.members) == ["real"]


@pytest.mark.parametrize("kind", [b"1", b"2", b"3", b"4", b"5", b"6"])
def test_header_only_types_carry_no_data_whatever_their_size_field(kind):
    """Go reads no data after a link, device, directory or FIFO header: what follows is the next header."""
    hidden = member("manifest.json", b"[]")
    archive = header("entry", size=len(hidden), kind=kind, linkname="real" if kind in b"12" else "") + hidden
    archive = member("real", b"x") + archive + END
    assert "manifest.json" in scan(archive).members


def test_an_old_regular_entry_named_like_a_directory_is_a_directory():
    hidden = member("manifest.json", b"[]")
    index = scan(header("dir/", size=len(hidden), kind=b"\0") + hidden + END)
    assert "manifest.json" in index.members and "dir" not in index.members


@pytest.mark.parametrize(("kind", "needle"), [(b"7", "type"), (b"S", "sparse"), (b"V", "sparse/multivolume"), (b"Z", "type")])
def test_entry_types_docker_load_does_not_accept_are_refused(kind, needle):
    with pytest.raises(ArchiveError, match=needle):
        scan(member("f", b"x", kind=kind) + END)


def test_duplicate_names_are_refused_also_after_cleaning():
    with pytest.raises(ArchiveError, match="twice"):
        scan(member("manifest.json", b"[]") + member("./manifest.json", b"[1]") + END)
    with pytest.raises(ArchiveError, match="twice"):
        scan(member("a/b", b"1") + member("a//b", b"2") + END)


def test_data_after_the_end_marker_is_refused_and_no_end_marker_is_accepted():
    with pytest.raises(ArchiveError, match="after the end-of-archive marker"):
        scan(member("a", b"1") + END + member("manifest.json", b"[]"))
    with pytest.raises(ArchiveError, match="after the end-of-archive marker"):
        scan(member("a", b"1") + bytes(BLOCK) + member("manifest.json", b"[]"))
    assert "a" in scan(member("a", b"1")).members  # Go ends cleanly at EOF on a block boundary
    assert "a" in scan(member("a", b"1") + END + bytes(10240)).members  # zero padding to a record


def test_numbers_parse_as_go_parses_them():
    assert number(b"00000001750\0", what="size", offset=0) == 0o1750
    assert number(b"  1750  \0\0\0\0", what="size", offset=0) == 0o1750
    assert number(b"\0\0\0\0\0\0\0\0\0\0\0\0", what="size", offset=0) == 0
    big = bytes([0x80]) + ((1 << 62) + 5).to_bytes(11, "big")
    assert number(big, what="size", offset=0) == (1 << 62) + 5
    huge = bytes([0x80 | 0x01]) + (5).to_bytes(11, "big")  # the first byte's low bits count: past Go's int64
    with pytest.raises(ArchiveError, match="int64"):
        number(huge, what="size", offset=0)
    for bad in (b"0o1750\0\0\0\0\0\0", b"1_750\0\0\0\0\0\0\0", b"+1750\0\0\0\0\0\0\0", b"12 34\0\0\0\0\0\0\0", b"\xc0" + bytes(11)):
        with pytest.raises(ArchiveError):
            number(bad, what="size", offset=0)


def test_sizes_over_8_gib_in_base_256_or_pax_are_read():
    size = 9 << 30
    field = bytes([0x80]) + size.to_bytes(11, "big")
    scanner = ArchiveScanner()
    scanner.feed(header("huge", size_field=field))
    assert scanner.index.members["huge"].size == size
    scanner = ArchiveScanner()
    scanner.feed(pax(rec("size", str(size))) + header("huge", size=0))
    assert scanner.index.members["huge"].size == size


@pytest.mark.parametrize(
    "entries",
    [
        [("l", b"2", "../outside")],
        [("l", b"2", "/etc/passwd")],
        [("a/b", b"2", ".."), ("evil", b"2", "a/b/../..")],  # lexically inside, really outside
        [("d", b"2", "sub/../.."), ("x", b"2", "d")],
        [("x", b"2", "y"), ("y", b"2", "x")],  # a loop
    ],
)
def test_links_are_refused_by_where_they_really_lead(entries):
    archive = b"".join(header(name, kind=kind, linkname=target) for name, kind, target in entries) + END
    with pytest.raises(ArchiveError, match="unsafe link|too many links"):
        scan(archive)


def test_a_link_hidden_in_pax_linkpath_or_a_gnu_long_link_is_checked_too():
    with pytest.raises(ArchiveError, match="unsafe link"):
        scan(pax(rec("linkpath", "../../etc")) + header("l", kind=b"2", linkname="harmless") + END)
    with pytest.raises(ArchiveError, match="unsafe link"):
        scan(member("././@LongLink", b"../../etc/shadow\0", kind=b"K") + header("l", kind=b"2", linkname="ok") + END)


def test_an_extended_header_that_describes_nothing_is_refused():
    with pytest.raises(ArchiveError, match="describes no entry"):
        scan(pax(rec("path", "a")) + END)


def test_ordinary_archives_read_the_same_as_pythons_tarfile():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in {"a": b"1", "dir/" + "n" * 120: b"22", "blobs/sha256/" + "f" * 64: b"{}"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    ours = scan(buffer.getvalue())
    theirs = tarfile.open(fileobj=io.BytesIO(buffer.getvalue()))
    assert {m.name: m.size for m in theirs.getmembers()} == {n: m.size for n, m in ours.members.items()}


# ---------------------------------------------------------------- against Go's reader

GO_MAX_SIZE = (1 << 63) - 1  # Go's Header.Size is an int64


@pytest.fixture(scope="module")
def go_tar(go_lister):
    """Go's archive/tar as a function: archive bytes in, one dict per entry out, then how the stream ended."""

    def read(data: bytes) -> list[dict]:
        done = subprocess.run([str(go_lister)], input=data, capture_output=True, timeout=60, check=True)
        return [json.loads(line) for line in done.stdout.splitlines()]

    return read


def written_archive() -> bytes:
    """What NodeSource writes, in miniature: directories, small members, a blob header plus data, the end."""
    blob = b"layer bytes " * 100
    return (
        directory_header("blobs/")
        + directory_header("blobs/sha256/")
        + build_member("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        + build_member("manifest.json", b"[]")
        + member_header("blobs/sha256/" + "a" * 64, len(blob))
        + blob
        + padding(len(blob))
        + END
    )


def test_go_reads_what_the_writer_writes_as_ustar(go_tar):
    entries = go_tar(written_archive())
    assert entries[-1] == {"end": "EOF"}
    listed = [(e["name"], e["type"], e["size"], e["mode"], e["format"]) for e in entries[:-1]]
    assert listed == [
        ("blobs/", "5", 0, 0o755, "USTAR"),
        ("blobs/sha256/", "5", 0, 0o755, "USTAR"),
        ("oci-layout", "0", 30, 0o644, "USTAR"),
        ("manifest.json", "0", 2, 0o644, "USTAR"),
        ("blobs/sha256/" + "a" * 64, "0", 1200, 0o644, "USTAR"),
    ]
    ours = scan(written_archive())
    assert {n: m.size for n, m in ours.members.items()} == {e[0]: e[2] for e in listed if e[1] == "0"}


@pytest.mark.parametrize(
    ("size", "form"),
    [(0, "USTAR"), (OCTAL_SIZE_LIMIT - 1, "USTAR"), (OCTAL_SIZE_LIMIT, "GNU"), (20 << 30, "GNU"), (GO_MAX_SIZE, "GNU")],
)
def test_go_reads_a_header_of_any_size_in_the_plainest_form_that_holds_it(go_tar, size, form):
    """Only the header: Go parses it (size and format), then finds the claimed data missing."""
    block = member_header("blobs/sha256/" + "b" * 64, size)
    first, *rest = go_tar(block)
    assert (first["size"], first["format"], first["type"]) == (size, form, "0")
    assert rest == ([{"end": "EOF"}] if size == 0 else [{"error": "unexpected EOF", "read": 0}])
    assert parse_header(block, offset=0).size == size
    assert tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape").size == size


def test_the_writer_refuses_what_a_plain_header_cannot_carry():
    with pytest.raises(ArchiveError, match="too long"):
        member_header("n" * 101, 0)
    with pytest.raises(ArchiveError, match="negative size"):
        member_header("f", -1)
    with pytest.raises(ArchiveError, match="larger than a tar reader"):
        member_header("f", GO_MAX_SIZE + 1)
    assert build_member("m", b"12") == member_header("m", 2) + b"12" + bytes(510)


@pytest.mark.parametrize(
    "archive",
    [
        member("name", b"x", prefix=b"dir") + END,
        member("name", b"x", magic=b"ustar  \0", prefix=b"00000000017\0" + b"\x80" + bytes(10) + b"\x01") + END,
        member("name", b"x", magic=b"ustar  \0", prefix=b"\x31\x32atime") + END,
        member("name", b"x", magic=b"ustar  \0", prefix=b"\xff" * 12) + END,
        member("name", b"x", magic=b"ustar  \0", prefix=b"\x80" + b"\xff" * 11) + END,
        member("name", b"x", magic=b"ustar  \0", prefix=b"7" * 11 + b"\0" + b"dir") + END,
        member("name", b"x", magic=bytes(8), prefix=b"dir") + END,
        pax(rec("path", "d" * 150 + "/long.txt")) + member("short", b"x") + END,
        member("././@LongLink", b"g" * 120 + b"\0", kind=b"L") + member("short", b"x") + END,
        pax(rec("size", "1000")) + header("big", size=0) + b"y" * 1000 + bytes(24) + END,
    ],
    ids=["ustar-prefix", "gnu-times", "gnu-bad-times", "gnu-negative-times", "gnu-huge-time", "gnu-ctime-name", "v7",
         "pax-path", "gnu-long-name", "pax-size"],
)
def test_go_and_the_scanner_agree_on_names_and_sizes(go_tar, archive):
    entries = go_tar(archive)
    assert entries[-1] == {"end": "EOF"}
    assert {e["name"]: e["size"] for e in entries[:-1]} == {n: m.size for n, m in scan(archive).members.items()}
