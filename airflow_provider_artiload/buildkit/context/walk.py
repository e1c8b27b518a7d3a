"""List a build context as BuildKit's FileSync sender (tonistiigi/fsutil) does.

The daemon's ``Validator`` wants: depth first, a directory before its children,
names sorted bytewise per directory, ``/``-separated relative paths, no root.
Each :class:`Entry` becomes one STAT packet (the i-th is file id i); nothing
here reads file contents.  Paths are ``os.fsdecode`` strings (surrogateescape),
so any name survives; ``Entry.wire_path`` is the exact bytes.  ``Stat.path`` is
a proto3 ``string`` the Go side never checks for UTF-8 (gogo, then vtprotobuf):
declare it ``bytes`` in our ``.proto`` (same wire type) and send ``wire_path``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import re
import stat as st
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from airflow_provider_artiload.buildkit.context.dockerignore import MatchInfo, PatternMatcher
from airflow_provider_artiload.buildkit.context.globs import go_clean, go_match_name

__all__ = ["Entry", "follow_links", "go_file_mode", "walk"]

# Go os.FileMode bits (io/fs).
MODE_DIR = 1 << 31
MODE_SYMLINK = 1 << 27
MODE_DEVICE = 1 << 26
MODE_NAMED_PIPE = 1 << 25
MODE_SOCKET = 1 << 24
MODE_SETUID = 1 << 23
MODE_SETGID = 1 << 22
MODE_CHAR_DEVICE = 1 << 21
MODE_STICKY = 1 << 20
MODE_IRREGULAR = 1 << 19
MODE_TYPE = (
    MODE_DIR | MODE_SYMLINK | MODE_NAMED_PIPE | MODE_SOCKET | MODE_DEVICE | MODE_CHAR_DEVICE | MODE_IRREGULAR
)

_TYPE_BITS = {
    st.S_IFDIR: MODE_DIR, st.S_IFLNK: MODE_SYMLINK, st.S_IFBLK: MODE_DEVICE,
    st.S_IFCHR: MODE_DEVICE | MODE_CHAR_DEVICE, st.S_IFIFO: MODE_NAMED_PIPE, st.S_IFSOCK: MODE_SOCKET,
}  # fmt: skip
_SPECIAL_BITS = ((st.S_ISUID, MODE_SETUID), (st.S_ISGID, MODE_SETGID), (st.S_ISVTX, MODE_STICKY))


def go_file_mode(st_mode: int) -> int:
    """Unix ``st_mode`` -> Go ``os.FileMode``, as Go's ``os.Lstat`` builds it."""
    mode = (st_mode & 0o777) | _TYPE_BITS.get(st.S_IFMT(st_mode), 0)
    return mode | sum(go for unix, go in _SPECIAL_BITS if st_mode & unix)


@dataclass(frozen=True)
class Entry:
    """One fsutil ``Stat``: the fields the sender puts on the wire, plus ``abspath``.

    ``uid``/``gid`` are the real owner, as fsutil's ``mkstat`` sends; BuildKit's
    Go client zeroes them for the ``context`` dir only (a ``Map`` in
    ``client/solve.go``): the session should ``dataclasses.replace`` there.
    ``size`` is ``st_size`` for every non-directory, as fsutil sends (symlink:
    target length; hardlink duplicate: the file's size, which the receiver's
    ``sameFile`` compares on incremental uploads).
    """

    path: str
    abspath: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict, hash=False)

    @property
    def is_dir(self) -> bool:
        return bool(self.mode & MODE_DIR)

    @property
    def is_symlink(self) -> bool:
        return bool(self.mode & MODE_SYMLINK)

    @property
    def is_hardlink(self) -> bool:
        """A later path of an inode already sent: the receiver links, never requests it."""
        return not self.mode & MODE_TYPE and bool(self.linkname)

    @property
    def is_regular(self) -> bool:
        """The daemon may REQ this entry's data (fsutil ``fileCanRequestData``, minus hardlinks).

        Sockets count: fsutil clears their type bit, and when opening one
        fails its sender just ends the file (an empty DATA), so must ours.
        """
        return not self.mode & MODE_TYPE and not self.linkname

    @property
    def wire_path(self) -> bytes:
        return os.fsencode(self.path)

    @property
    def wire_linkname(self) -> bytes:
        return os.fsencode(self.linkname)


def walk(
    root: str | bytes | os.PathLike[str],
    *,
    include_patterns: Iterable[str] = (),
    exclude_patterns: Iterable[str] = (),
    follow_paths: Iterable[str] = (),
) -> Iterator[Entry]:
    """Yield the entries fsutil would send for ``root``, in the daemon's order.

    ``include_patterns``/``exclude_patterns`` use Docker pattern rules
    (:class:`PatternMatcher`), checked with parent results carried down the
    tree as fsutil's ``FilterFS`` does; a directory that is not selected
    itself is still emitted, just before its first selected descendant.
    ``follow_paths`` are resolved through symlinks (:func:`follow_links`) and
    the results added to the include patterns.  Root, pattern and follow-path
    errors are raised by this call, before the first entry.
    """
    root_b = _resolve_root(root)
    includes, excludes, follow = (_str_list(v) for v in (include_patterns, exclude_patterns, follow_paths))
    if follow:
        targets = follow_links(root_b, follow)
        if targets is not None:  # fsutil: a "." among them drops the include filter
            includes = _dedupe(includes + targets) or []
    inc = PatternMatcher(includes, source="include-patterns") if includes else None
    exc = PatternMatcher(excludes) if excludes else None
    return _walk(root_b, inc, exc)


def _str_list(values: Iterable[str]) -> list[str]:
    if isinstance(values, (str, bytes)):
        raise TypeError(f"expected a list of patterns/paths, got the single string {values!r}")
    return list(values)


@dataclass
class _Dir:
    rel: str
    entry: os.DirEntry[bytes] | None
    children: Iterator[os.DirEntry[bytes]]
    inc_info: MatchInfo
    exc_info: MatchInfo
    emitted: bool


def _walk(root_b: bytes, inc: PatternMatcher | None, exc: PatternMatcher | None) -> Iterator[Entry]:
    seen: dict[tuple[int, int], str] = {}  # (st_dev, st_ino) -> first path sent
    stack = [_Dir("", None, _list_dir(root_b), (), (), True)]
    while stack:
        parent = stack[-1]
        child = next(parent.children, None)
        if child is None:
            stack.pop()
            continue
        name = os.fsdecode(child.name)
        rel = f"{parent.rel}/{name}" if parent.rel else name
        try:
            is_dir = child.is_dir(follow_symlinks=False)
        except FileNotFoundError:
            continue
        # fsutil FilterFS: unselected entries are skipped; a skipped directory is
        # still walked unless no pattern could select anything below it.
        skip, inc_info, exc_info = False, (), ()
        if inc is not None:
            selected, inc_info = inc.match_with_parent(rel, parent.inc_info)
            if not selected and is_dir and not inc.may_match_under(rel):
                continue
            skip = not selected
        if exc is not None:
            excluded, exc_info = exc.match_with_parent(rel, parent.exc_info)
            if excluded and is_dir and not exc.may_reinclude_under(rel):
                continue
            skip = skip or excluded
        if not skip:
            for anc in stack:  # parents held back by the filters go first
                if not anc.emitted and anc.entry is not None:
                    yield _make_entry(anc.rel, anc.entry, seen)
                    anc.emitted = True
            try:
                entry = _make_entry(rel, child, seen)
            except (FileNotFoundError, NotADirectoryError):
                continue  # vanished since listed
            yield entry
        if is_dir:
            try:
                children = _list_dir(child.path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except PermissionError:
                if skip:
                    continue  # fsutil ignores unreadable directories it is filtering out
                raise
            stack.append(_Dir(rel, child, children, inc_info, exc_info, not skip))


def _list_dir(path: bytes) -> Iterator[os.DirEntry[bytes]]:
    """One directory's entries sorted by name bytes (Go ``os.ReadDir`` order)."""
    with os.scandir(path) as it:
        entries = sorted(it, key=lambda e: e.name)
    return iter(entries)


def _make_entry(rel: str, dirent: os.DirEntry[bytes], seen: dict[tuple[int, int], str]) -> Entry:
    """fsutil ``mkstat`` + ``setUnixOpt`` + ``loadXattr`` for one emitted path."""
    s = dirent.stat(follow_symlinks=False)
    path_b = dirent.path
    fmt = st.S_IFMT(s.st_mode)
    linkname = ""
    if fmt == st.S_IFLNK:
        linkname = os.fsdecode(os.readlink(path_b))
    elif fmt != st.S_IFDIR and s.st_nlink > 1:
        first = seen.setdefault((s.st_dev, s.st_ino), rel)
        if first != rel:
            linkname = first
    is_dev = fmt in (st.S_IFBLK, st.S_IFCHR)
    mode = go_file_mode(s.st_mode) & ~MODE_SOCKET  # fsutil clears it: archive/tar has no sockets
    return Entry(rel, os.fsdecode(path_b), mode, s.st_uid, s.st_gid, 0 if fmt == st.S_IFDIR else s.st_size,
                 s.st_mtime_ns, linkname, os.major(s.st_rdev) if is_dev else 0,
                 os.minor(s.st_rdev) if is_dev else 0, _read_xattrs(path_b))  # fmt: skip


def _read_xattrs(path: bytes) -> dict[str, bytes]:
    """``llistxattr``/``lgetxattr`` like fsutil: skip ``com.apple.*``, unsupported -> none."""
    if not hasattr(os, "listxattr"):
        return {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        raise
    values: dict[str, bytes] = {}
    for key in (k for k in names if not k.startswith("com.apple.")):
        with contextlib.suppress(OSError):  # upstream drops values it cannot read
            values[key] = os.getxattr(path, key, follow_symlinks=False)
    return values


def _resolve_root(root: str | bytes | os.PathLike[str]) -> bytes:
    """fsutil ``NewFS``: the root's symlinks are resolved and it must be a directory."""
    root_b = os.fsencode(root)
    try:
        info = os.stat(root_b)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "build context not found", os.fsdecode(root_b)) from None
    if not st.S_ISDIR(info.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "build context is not a directory", os.fsdecode(root_b))
    return os.path.realpath(root_b)


def _go_join(*elems: str) -> str:
    """Go ``filepath.Join``: skip empty elements, join with ``/``, clean."""
    parts = [e for e in elems if e]
    return go_clean("/".join(parts)) if parts else ""


def _dedupe(paths: list[str]) -> list[str] | None:
    """fsutil ``dedupePaths``: drop paths under the previous one; ``.`` means no filter (None)."""
    out: list[str] = []
    for p in paths:
        if p == ".":
            return None
        if not p.startswith((out[-1] if out else "") + "/"):
            out.append(p)
    return out


def follow_links(root: str | bytes | os.PathLike[str], paths: Iterable[str]) -> list[str] | None:
    """fsutil ``FollowLinks``: each path plus every symlink target met along it.

    Each element of each path is checked; a symlink (or, for a wildcard
    element, every matching symlink) adds itself and continues from its target,
    absolute targets being taken relative to ``root``.  Returns sorted,
    deduplicated include patterns, or None when one of them is the root itself
    (no filtering).  Nothing outside ``root`` is looked at.
    """
    resolved: set[str] = set()
    for p in paths:
        _follow(os.fsencode(root), p, resolved)
    return _dedupe(sorted(resolved, key=os.fsencode))


def _follow(root: bytes, path: str, resolved: set[str]) -> None:
    rest = _go_join(".", path) or "."
    current = "."
    while True:
        first, _, rest = rest.partition("/")
        current = _go_join(current, first)
        targets = _read_symlink(root, current, allow_wildcard=True)
        if (not rest or targets) and current in resolved:
            return
        if targets:
            resolved.add(current)
            for target in targets:
                _follow(root, _go_join(target, rest), resolved)
            return
        if not rest:
            resolved.add(current)
            return


def _read_symlink(root: bytes, rel: str, allow_wildcard: bool) -> list[str]:
    """Targets (absolute within ``root``) of the symlink(s) at ``rel``; [] if none."""
    if rel in (".", "/", "..") or rel.startswith("../"):
        return []
    base, parent = posixpath.basename(rel), posixpath.dirname(rel) or "."
    if allow_wildcard and _contains_wildcards(base):
        try:
            names = sorted(os.listdir(os.path.join(root, os.fsencode(parent))))
        except (FileNotFoundError, NotADirectoryError):
            return []
        out: list[str] = []
        for name in names:
            if go_match_name(base, os.fsdecode(name)):
                out += _read_symlink(root, _go_join(parent, os.fsdecode(name)), False)
        return out
    full = os.path.join(root, os.fsencode(rel))
    try:
        if not st.S_ISLNK(os.lstat(full).st_mode):
            return []
        link = go_clean(os.fsdecode(os.readlink(full)))
    except (FileNotFoundError, NotADirectoryError):
        return []
    if link.startswith("/"):
        return [link]
    return [_go_join("/", _go_join(parent, link))]


def _contains_wildcards(name: str) -> bool:
    """fsutil ``containsWildcards`` (unix): ``*``, ``?`` or ``[`` not escaped by ``\\``."""
    return any(c in "*?[" for c in re.sub(r"\\.", "", name, flags=re.S))
