"""Where a link in an image archive really leads; refused if it leaves the archive.

Hard links name their target from the archive root, symlinks from their own
directory. Lexical normalisation alone is not enough (with ``a/b -> ..``,
``a/b/../..`` looks inside but leaves), so a target is walked one component
at a time, following links on the way as the kernel would once the engine
has unpacked them.
"""

from __future__ import annotations

import posixpath

from airflow_provider_artiload.exceptions import ArchiveError

LINK_HOPS = 40  # as the kernel's symlink limit
RawLinks = dict[str, tuple[str, bool]]  # link name -> (target as written, symbolic?)


def resolve_links(links: RawLinks) -> dict[str, str]:
    """Every link, through any chain of links and symlinked directories, to the archive path it names."""
    resolved = {}
    for name, (target, symbolic) in links.items():
        start = posixpath.dirname(name) if symbolic else ""
        resolved[name] = _resolve(name, start, target, links)
    return resolved


def link_target(name: str, target: str, *, symbolic: bool) -> str:
    """The archive path a link names (a symlink relative to its directory), refused if it leaves the archive."""
    if not target:
        raise ArchiveError(f"link {name!r} in the archive has no target")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name) if symbolic else "", target))
    if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
        raise ArchiveError(f"unsafe link {name!r} -> {target!r} in the archive (points outside it)")
    return resolved


def _resolve(name: str, start: str, target: str, links: RawLinks) -> str:
    """Walk ``target`` from ``start`` one component at a time, following links as the kernel would.

    ``start`` (a symlink's own directory) is walked too: with ``d/up -> .``,
    ``d/up/x`` sits in ``d``, so ``d/up/x -> ../..`` leaves the archive.
    """
    stack: list[str] = []
    todo = [p for p in target.split("/") if p][::-1] + [p for p in start.split("/") if p][::-1]
    hops = 0
    while todo:
        part = todo.pop()
        if part == ".":
            continue
        if part == "..":
            if not stack:
                raise ArchiveError(f"unsafe link {name!r} -> {target!r} in the archive (resolves outside it)")
            stack.pop()
            continue
        here = "/".join([*stack, part])
        link = links.get(here)
        if link is not None and link[1]:  # a symlink on the way: continue from its target
            hops += 1
            if hops > LINK_HOPS:
                raise ArchiveError(f"link {name!r} resolves through too many links (a loop?)")
            if link[0].startswith("/"):
                raise ArchiveError(f"unsafe link {here!r} -> {link[0]!r} in the archive (absolute)")
            todo.extend([p for p in link[0].split("/") if p][::-1])
            continue
        stack.append(part)
        if link is not None:  # a hard link names its target from the archive root
            hops += 1
            if hops > LINK_HOPS:
                raise ArchiveError(f"link {name!r} resolves through too many links (a loop?)")
            stack = []
            todo.extend([p for p in link[0].split("/") if p][::-1])
    return "/".join(stack)
