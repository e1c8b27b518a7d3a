"""Go's path patterns without backtracking: ``filepath.Clean``, ``filepath.Match`` and patternmatcher's globs.

Mirrors moby/patternmatcher's ``Pattern.compile`` (``*``, ``?``, ``[...]``,
``\\`` and ``**``) and Go's ``filepath.Match``, compiled to a :class:`Glob`
automaton rather than a Python regex: a pattern from the repository being
built must not be able to freeze the worker. :mod:`.dockerignore` builds the
pattern list on top of this.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Any

# How a cleaned pattern is tested: equality, a prefix ("a/**"), a suffix ("**/a") or the automaton.
EXACT, PREFIX, SUFFIX, REGEX = "exact", "prefix", "suffix", "regex"


def go_clean(path: str) -> str:
    """Lexical clean like Go's ``filepath.Clean`` on unix ("" -> ".", "//a" -> "/a")."""
    cleaned = posixpath.normpath(path) if path else "."
    return cleaned[1:] if cleaned.startswith("//") else cleaned


# Character tests of the automaton. A class is (negated, ((low, high), ...)).
_NOT_SLASH, _NOT_NEWLINE = "not-slash", "not-newline"  # Go regexp "[^/]" and "." (which excludes \n)
_Test = str | tuple[bool, tuple[tuple[str, str], ...]]
# Instructions: ("one", test) consumes a char; ("loop", test) consumes any number; ("skip", n) may jump n ahead.
_Op = tuple[str, Any]
_CACHE_LIMIT = 4096  # DFA transitions kept per pattern; beyond it the cache restarts (time stays linear)


def _accepts(test: _Test, ch: str) -> bool:
    if test == _NOT_SLASH:
        return ch != "/"
    if test == _NOT_NEWLINE:
        return ch != "\n"
    if isinstance(test, str):
        return ch == test
    negated, ranges = test
    return any(low <= ch <= high for low, high in ranges) != negated


class Glob:
    """A compiled pattern run as an automaton: a set of positions, never backtracking.

    Python's ``re`` backtracks, so ``*a*a*a*a*a*b`` against a long name takes
    exponential time; a ``.dockerignore`` comes from the repository being
    built, so that would let a commit freeze the worker. Here each character
    advances a set of at most ``len(ops) + 1`` positions: O(pattern x path).
    Transitions are memoised per (set, character), a lazily built DFA, so
    ordinary patterns cost one dict lookup per character.
    """

    def __init__(self, ops: Sequence[_Op]) -> None:
        self.ops: tuple[_Op, ...] = tuple(ops)
        self._cache: dict[tuple[frozenset[int], str], frozenset[int]] = {}
        self._start = self._closure({0})

    def match(self, text: str) -> bool:
        """True if the whole of ``text`` matches (Go ``regexp`` anchored with ``^...$``)."""
        return self._final(text, parents=False)

    def match_or_parent(self, text: str) -> bool:
        """True if ``text`` or a prefix of it ending before a ``/`` matches, in one pass."""
        return self._final(text, parents=True)

    def work(self, text: str) -> int:
        """Positions visited matching ``text`` without the memo: the cost bound the tests check."""
        states, visited = self._start, len(self._start)
        for ch in text:
            states = self._advance(states, ch)
            visited += len(states) + 1
        return visited

    def _final(self, text: str, *, parents: bool) -> bool:
        end, states, cache = len(self.ops), self._start, self._cache
        for ch in text:
            if parents and ch == "/" and end in states:
                return True
            key = (states, ch)
            nxt = cache.get(key)
            if nxt is None:
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                nxt = cache[key] = self._advance(states, ch)
            if not nxt:
                return False
            states = nxt
        return end in states

    def _advance(self, states: frozenset[int], ch: str) -> frozenset[int]:
        nxt: set[int] = set()
        for pos in states:
            if pos < len(self.ops):
                op, arg = self.ops[pos]
                if op != "skip" and _accepts(arg, ch):
                    nxt.add(pos + 1 if op == "one" else pos)
        return self._closure(nxt)

    def _closure(self, states: set[int]) -> frozenset[int]:
        """Add the positions reachable without consuming: past a loop, over a skippable group."""
        todo, seen = list(states), set(states)
        while todo:
            pos = todo.pop()
            if pos >= len(self.ops):
                continue
            op, arg = self.ops[pos]
            targets = (pos + 1,) if op == "loop" else (pos + 1, pos + arg) if op == "skip" else ()
            for target in targets:
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        return frozenset(seen)


def _parse_class(pat: str, pos: int) -> tuple[_Test, int]:
    """Parse a ``[...]`` class whose ``[`` is at ``pat[pos-1]``, as Go's ``matchChunk``.

    Returns the class test and the index after ``]``; raises ValueError where
    ``filepath.Match`` returns ErrBadPattern (and for a reversed range).
    """
    n = len(pat)
    negated = pos < n and pat[pos] == "^"
    pos += negated
    ranges: list[tuple[str, str]] = []
    while True:
        if pos < n and pat[pos] == "]" and ranges:
            return (negated, tuple(ranges)), pos + 1
        low, pos = _class_char(pat, pos)
        high = low
        if pat[pos] == "-":
            high, pos = _class_char(pat, pos + 1)
        if high < low:
            raise ValueError(f"bad character range {low}-{high}")
        ranges.append((low, high))


def _class_char(pat: str, pos: int) -> tuple[str, int]:
    """Go's ``getEsc``: one (possibly escaped) class character; never the last one."""
    if pos >= len(pat) or pat[pos] in "-]":
        raise ValueError("bad character class")
    if pat[pos] == "\\":
        pos += 1
        if pos >= len(pat):
            raise ValueError("bad escape in character class")
    if pos + 1 >= len(pat):
        raise ValueError("unterminated character class")
    return pat[pos], pos + 1


# "**/" in the middle: any run (even of "/") that ends with "/", or nothing -- Go's "(.*/)?".
_ANY_DIRS: tuple[_Op, ...] = (("skip", 3), ("loop", _NOT_NEWLINE), ("one", "/"))


def compile_pattern(pat: str, double_star: bool = True) -> tuple[str, Glob | None]:
    """Classify and translate a cleaned pattern like ``Pattern.compile`` upstream.

    ``*`` and ``?`` never match ``/``; ``**`` matches any number of directories
    (``**/`` eats its slash); a trailing ``**`` after plain text is a prefix
    match; a leading ``**`` followed by plain text is a suffix match.  With
    ``double_star=False`` (Go ``filepath.Match``) ``**`` is just ``*``.
    """
    ops: list[_Op] = []
    kind, pos, n, i = EXACT, 0, len(pat), 0
    while pos < n:
        ch = pat[pos]
        pos += 1
        if ch == "*" and double_star and pos < n and pat[pos] == "*":
            pos += 1
            if pos < n and pat[pos] == "/":
                pos += 1
            if pos == n and kind == EXACT:
                kind = PREFIX
            else:
                ops += [("loop", _NOT_NEWLINE)] if pos == n else _ANY_DIRS
                kind = REGEX
            if i == 0:
                kind = SUFFIX
        elif ch == "*":
            while not double_star and pos < n and pat[pos] == "*":
                pos += 1
            ops.append(("loop", _NOT_SLASH))
            kind = REGEX
        elif ch == "?":
            ops.append(("one", _NOT_SLASH))
            kind = REGEX
        elif ch == "\\":
            if pos >= n:
                raise ValueError("trailing backslash")
            ops.append(("one", pat[pos]))
            pos += 1
            kind = REGEX
        elif ch == "[":
            test, pos = _parse_class(pat, pos)
            ops.append(("one", test))
            kind = REGEX
        else:
            ops.append(("one", ch))
            kind = REGEX if ch == "]" else kind
        i += 1
    return kind, (Glob(ops) if kind == REGEX or not double_star else None)


def go_match_name(pattern: str, name: str) -> bool:
    """Go ``filepath.Match`` for one path element (used by FollowPaths wildcards)."""
    try:
        glob = compile_pattern(pattern, double_star=False)[1]
    except ValueError:
        return False  # upstream ignores the error there: `ok, _ := filepath.Match(...)`
    return glob is not None and glob.match(name)
