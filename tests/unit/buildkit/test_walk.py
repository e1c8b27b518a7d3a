"""The build-context walk: order, Go modes, links and filters as fsutil sends them."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_artiload.buildkit.context import walk as walk_mod
from airflow_provider_artiload.buildkit.context.walk import (
    MODE_CHAR_DEVICE,
    MODE_DEVICE,
    MODE_DIR,
    MODE_NAMED_PIPE,
    MODE_SETGID,
    MODE_SETUID,
    MODE_STICKY,
    MODE_SYMLINK,
    Entry,
    follow_links,
    go_file_mode,
    walk,
)


def make(root: Path, *specs: str) -> None:
    """Create files ("a/b") and directories ("a/b/") under root."""
    for spec in specs:
        target = root / spec
        if spec.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(spec)


def paths(root: Path | str, **kwargs: object) -> list[str]:
    return [e.path for e in walk(root, **kwargs)]  # type: ignore[arg-type]


def by_path(root: Path, **kwargs: object) -> dict[str, Entry]:
    return {e.path: e for e in walk(root, **kwargs)}  # type: ignore[arg-type]


def test_order_is_depth_first_bytewise_without_root(tmp_path: Path) -> None:
    make(tmp_path, "a.b", "a-b", "B", "ä", "a/z", "a/sub/", "a/sub/f", "a/A")
    # str/locale order would give e.g. a, a-b, a.b, ä, B; Go sorts names as bytes and
    # recurses before the next sibling, so "a/..." precedes "a-b" although '-' < '/'.
    assert paths(tmp_path) == ["B", "a", "a/A", "a/sub", "a/sub/f", "a/z", "a-b", "a.b", "ä"]


def test_sort_is_by_bytes_not_by_str(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/\xff"
    open(raw, "wb").close()
    (tmp_path / "😀").touch()  # UTF-8 F0 9F 98 80 < FF, but U+1F600 > U+DCFF as str
    (tmp_path / "z").touch()
    names = paths(tmp_path)
    assert names == ["z", "😀", os.fsdecode(b"\xff")]
    assert names != sorted(names)


def test_directory_precedes_its_children(tmp_path: Path) -> None:
    make(tmp_path, "x/y/z/f", "x/g", "w")
    seen: set[str] = set()
    for path in paths(tmp_path):
        parent = path.rpartition("/")[0]
        assert not parent or parent in seen, path
        seen.add(path)


def test_entry_fields_match_lstat(tmp_path: Path) -> None:
    make(tmp_path, "d/f")
    os.utime(tmp_path / "d/f", ns=(1_000_000_123, 1_234_567_891_234_567_891))
    entries = by_path(tmp_path)
    for rel, entry in entries.items():
        s = os.lstat(tmp_path / rel)
        assert entry.mtime_ns == s.st_mtime_ns
        assert (entry.uid, entry.gid) == (s.st_uid, s.st_gid)  # fsutil sends the real owner
        assert entry.abspath == str(tmp_path.resolve() / rel)
    assert entries["d/f"].mtime_ns == 1_234_567_891_234_567_891
    assert entries["d/f"].size == len("d/f")
    assert entries["d"].size == 0
    assert entries["d/f"].is_regular and not entries["d"].is_regular


def test_go_file_modes(tmp_path: Path) -> None:
    make(tmp_path, "dir/", "exe", "suid", "sgid", "plain", "sticky/")
    modes = {"dir": 0o755, "exe": 0o755, "suid": 0o4755, "sgid": 0o2750, "plain": 0o640, "sticky": 0o1777}
    for name, mode in modes.items():
        os.chmod(tmp_path / name, mode)
    os.symlink("plain", tmp_path / "link")
    os.mkfifo(tmp_path / "fifo", 0o600)
    e = by_path(tmp_path)
    assert e["dir"].mode == MODE_DIR | 0o755
    assert e["exe"].mode == 0o755
    assert e["suid"].mode == MODE_SETUID | 0o755
    assert e["sgid"].mode == MODE_SETGID | 0o750
    assert e["plain"].mode == 0o640
    assert e["sticky"].mode == MODE_DIR | MODE_STICKY | 0o777
    assert e["link"].mode == MODE_SYMLINK | 0o777
    assert e["fifo"].mode == MODE_NAMED_PIPE | 0o600
    assert not e["fifo"].is_regular and not e["link"].is_regular


@pytest.mark.parametrize(
    ("st_mode", "go_mode"),
    [
        (stat.S_IFREG | 0o644, 0o644),
        (stat.S_IFDIR | 0o755, MODE_DIR | 0o755),
        (stat.S_IFLNK | 0o777, MODE_SYMLINK | 0o777),
        (stat.S_IFCHR | 0o666, MODE_DEVICE | MODE_CHAR_DEVICE | 0o666),
        (stat.S_IFBLK | 0o660, MODE_DEVICE | 0o660),
        (stat.S_IFIFO | 0o600, MODE_NAMED_PIPE | 0o600),
        (stat.S_IFSOCK | 0o755, (1 << 24) | 0o755),
        (stat.S_IFREG | 0o6755, MODE_SETUID | MODE_SETGID | 0o755),
        (stat.S_IFDIR | 0o1777, MODE_DIR | MODE_STICKY | 0o777),
    ],
)
def test_go_file_mode_conversion(st_mode: int, go_mode: int) -> None:
    assert go_file_mode(st_mode) == go_mode


def test_socket_is_sent_as_a_plain_file_like_fsutil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # keep the socket path short
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("sock")
        os.chmod("sock", 0o755)
        entry = by_path(tmp_path)["sock"]
    assert entry.mode == 0o755  # socket bit cleared, as fsutil's mkstat does
    assert entry.is_regular


def test_char_device_numbers(tmp_path: Path) -> None:
    try:
        os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod not permitted here")
    entry = by_path(tmp_path)["null"]
    assert entry.mode & MODE_CHAR_DEVICE and entry.mode & MODE_DEVICE
    assert (entry.devmajor, entry.devminor) == (1, 3)
    assert not entry.is_regular


def test_symlinks_carry_their_target_and_are_not_followed(tmp_path: Path) -> None:
    make(tmp_path, "real/inside")
    os.symlink("real", tmp_path / "dirlink")
    os.symlink("/etc/passwd", tmp_path / "abs")
    os.symlink("missing/target", tmp_path / "dangling")
    e = by_path(tmp_path)
    assert "dirlink/inside" not in e
    links = (e["dirlink"].linkname, e["abs"].linkname, e["dangling"].linkname)
    assert links == ("real", "/etc/passwd", "missing/target")
    assert e["abs"].size == len("/etc/passwd")  # lstat size, like fsutil
    assert e["dirlink"].is_symlink and not e["dirlink"].is_hardlink


def test_hardlinks_point_at_the_first_path_sent(tmp_path: Path) -> None:
    make(tmp_path, "b/original")
    os.link(tmp_path / "b/original", tmp_path / "a-link")
    os.link(tmp_path / "b/original", tmp_path / "c-link")
    e = by_path(tmp_path)
    first = e["a-link"]  # "a-link" sorts before "b/original": it is the first path
    assert first.linkname == "" and first.is_regular and first.size == len("b/original")
    for later in ("b/original", "c-link"):
        assert e[later].linkname == "a-link"
        assert e[later].is_hardlink and not e[later].is_regular
        assert e[later].size == first.size  # fsutil keeps st_size on the duplicate too


def test_hardlink_whose_first_path_is_excluded_is_sent_as_a_file(tmp_path: Path) -> None:
    make(tmp_path, "a/original")
    os.link(tmp_path / "a/original", tmp_path / "copy")
    e = by_path(tmp_path, exclude_patterns=["a"])
    assert list(e) == ["copy"]
    assert e["copy"].linkname == "" and e["copy"].is_regular


def test_non_utf8_names_round_trip(tmp_path: Path) -> None:
    base = os.fsencode(tmp_path)
    os.mkdir(base + b"/d\xe9j\xe0")
    with open(base + b"/d\xe9j\xe0/caf\xe9", "wb") as fh:
        fh.write(b"data")
    os.symlink(b"caf\xe9", base + b"/d\xe9j\xe0/lnk\xff")
    entries = list(walk(tmp_path))
    assert [e.wire_path for e in entries] == [b"d\xe9j\xe0", b"d\xe9j\xe0/caf\xe9", b"d\xe9j\xe0/lnk\xff"]
    assert entries[2].wire_linkname == b"caf\xe9"
    assert isinstance(entries[1].path, str)
    with open(entries[1].abspath, "rb") as fh:  # abspath works with open() as is
        assert fh.read() == b"data"


def test_xattrs_are_read_without_following_links(tmp_path: Path) -> None:
    make(tmp_path, "f")
    try:
        os.setxattr(tmp_path / "f", "user.artiload", b"\x00v")
    except (OSError, AttributeError):
        pytest.skip("user xattrs not supported here")
    os.symlink("f", tmp_path / "l")
    e = by_path(tmp_path)
    assert e["f"].xattrs == {"user.artiload": b"\x00v"}
    assert e["l"].xattrs == {}


def test_exclude_with_exception_inside_excluded_dir(tmp_path: Path) -> None:
    make(tmp_path, "build/keep.txt", "build/drop.o", "build/sub/x.o", "src/main.c", "notes.md")
    got = paths(tmp_path, exclude_patterns=["build", "!build/keep.txt", "*.md"])
    # "build" itself is excluded but still sent, as the parent of a re-included file.
    assert got == ["build", "build/keep.txt", "src", "src/main.c"]


def test_wildcard_exception_reaches_deep_files(tmp_path: Path) -> None:
    make(tmp_path, "logs/a/b/c.keep", "logs/a/b/c.log", "logs/d.log", "app.py")
    got = paths(tmp_path, exclude_patterns=["logs", "!**/*.keep"])
    assert got == ["app.py", "logs", "logs/a", "logs/a/b", "logs/a/b/c.keep"]


def _listed_dirs(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    listed: list[bytes] = []
    real = walk_mod._list_dir

    def spy(path: bytes) -> Iterator[os.DirEntry[bytes]]:
        listed.append(os.path.basename(path))
        return real(path)

    monkeypatch.setattr(walk_mod, "_list_dir", spy)
    return listed


def test_excluded_dir_is_not_read_without_exceptions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make(tmp_path, "node_modules/pkg/index.js", "src/app.js")
    listed = _listed_dirs(monkeypatch)
    assert paths(tmp_path, exclude_patterns=["node_modules", "!src/app.js"]) == ["src", "src/app.js"]
    assert b"node_modules" not in listed and b"src" in listed


def test_excluded_dir_is_read_when_a_wildcard_exception_might_apply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make(tmp_path, "node_modules/pkg/index.js")
    listed = _listed_dirs(monkeypatch)
    assert paths(tmp_path, exclude_patterns=["node_modules", "!*/keep"]) == []
    assert b"node_modules" in listed and b"pkg" in listed


def test_include_patterns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make(tmp_path, "Dockerfile", "src/app.py", "src/lib/util.py", "src/README", "tests/t.py", "top.py")
    assert paths(tmp_path, include_patterns=["src/lib"]) == ["src", "src/lib", "src/lib/util.py"]
    got = paths(tmp_path, include_patterns=["src/app.py", "Dockerfile"])
    assert got == ["Dockerfile", "src", "src/app.py"]
    assert paths(tmp_path, include_patterns=["*.py"]) == ["top.py"]
    assert paths(tmp_path, include_patterns=["**/*.py"]) == [
        "src", "src/app.py", "src/lib", "src/lib/util.py", "tests", "tests/t.py", "top.py",
    ]  # fmt: skip
    listed = _listed_dirs(monkeypatch)
    paths(tmp_path, include_patterns=["src/lib"])
    assert b"tests" not in listed  # plain-prefix includes let the walk skip other dirs


def test_include_and_exclude_together(tmp_path: Path) -> None:
    make(tmp_path, "src/a.py", "src/a.pyc", "docs/x")
    assert paths(tmp_path, include_patterns=["src"], exclude_patterns=["**/*.pyc"]) == ["src", "src/a.py"]


def test_follow_paths_include_symlink_and_target(tmp_path: Path) -> None:
    make(tmp_path, "real/Dockerfile.real", "real/other", "unrelated")
    os.symlink("real/Dockerfile.real", tmp_path / "Dockerfile")
    os.symlink("/real/other", tmp_path / "abs-link")  # absolute targets stay inside the context
    assert paths(tmp_path, follow_paths=["Dockerfile"]) == ["Dockerfile", "real", "real/Dockerfile.real"]
    assert paths(tmp_path, follow_paths=["abs-link"]) == ["abs-link", "real", "real/other"]
    both = paths(tmp_path, include_patterns=["unrelated"], follow_paths=["Dockerfile"])
    assert both == ["Dockerfile", "real", "real/Dockerfile.real", "unrelated"]


def test_follow_links_resolves_chains_dirs_wildcards_and_loops(tmp_path: Path) -> None:
    make(tmp_path, "data/v1/file", "Dockerfile.a")
    os.symlink("data/v1", tmp_path / "current")
    os.symlink("current", tmp_path / "alias")
    os.symlink("loop-b", tmp_path / "loop-a")
    os.symlink("loop-a", tmp_path / "loop-b")
    root = os.fsencode(tmp_path)
    assert follow_links(root, ["alias/file"]) == ["alias", "current", "data/v1/file"]
    assert follow_links(root, ["loop-a"]) == ["loop-a", "loop-b"]
    assert follow_links(root, ["plain/missing"]) == ["plain/missing"]
    assert follow_links(root, ["alias*"]) == ["alias*", "current", "data/v1"]
    assert follow_links(root, ["../../etc"]) == ["../../etc"]  # nothing outside the root is read
    assert follow_links(root, ["."]) is None  # the whole context: no include filter


def test_errors_are_raised_by_the_call_not_the_first_next(tmp_path: Path) -> None:
    make(tmp_path, "file")
    with pytest.raises(FileNotFoundError, match="nope"):
        walk(tmp_path / "nope")
    with pytest.raises(NotADirectoryError, match="file"):
        walk(tmp_path / "file")
    with pytest.raises(ValueError, match=r"'\['"):
        walk(tmp_path, exclude_patterns=["["])
    with pytest.raises(TypeError, match="single string"):
        walk(tmp_path, exclude_patterns="*.pyc")  # type: ignore[arg-type]


def test_root_symlink_is_resolved_and_walk_is_lazy(tmp_path: Path) -> None:
    make(tmp_path, "ctx/a", "ctx/b")
    os.symlink("ctx", tmp_path / "ctx-link")
    it = walk(tmp_path / "ctx-link")
    assert iter(it) is it
    first = next(it)
    assert (first.path, first.abspath) == ("a", str(tmp_path.resolve() / "ctx" / "a"))
    assert [e.path for e in it] == ["b"]


def test_empty_context_and_unselected_empty_dirs(tmp_path: Path) -> None:
    assert paths(tmp_path) == []
    make(tmp_path, "empty/", "keep/f")
    assert paths(tmp_path) == ["empty", "keep", "keep/f"]
    assert paths(tmp_path, include_patterns=["keep"]) == ["keep", "keep/f"]
