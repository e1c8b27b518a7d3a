"""Docker's ``.dockerignore`` reader and pattern matcher, re-implemented.

Mirrors moby/patternmatcher (``New``, ``MatchesOrParentMatches``,
``MatchesUsingParentResults``) and its ``ignorefile.ReadAll``, which is what
BuildKit's Dockerfile frontend uses to turn ``.dockerignore`` into the
``exclude-patterns`` it asks the client's FileSync service to honour.

Paths and patterns are ``str``, ``/``-separated.  File names that are not
valid UTF-8 are carried as ``os.fsdecode`` gives them (surrogateescape), so one
undecodable byte is one character, as one invalid byte is one rune in Go.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["MatchInfo", "Pattern", "PatternMatcher", "go_clean", "go_match_name", "read_dockerignore"]

# Go's unicode.IsSpace set, used by strings.TrimSpace (str.strip() also strips \x1c-\x1f).
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
# Characters that make fsutil treat a pattern as more than a plain prefix (filter.go, unix).
_PATTERN_CHARS = frozenset("*[]?^\\")

_EXACT, _PREFIX, _SUFFIX, _REGEX = "exact", "prefix", "suffix", "regex"


def go_clean(path: str) -> str:
    """Lexical clean like Go's ``filepath.Clean`` on unix ("" -> ".", "//a" -> "/a")."""
    cleaned = posixpath.normpath(path) if path else "."
    return cleaned[1:] if cleaned.startswith("//") else cleaned


def read_dockerignore(source: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> list[str]:
    """Parse a ``.dockerignore`` the way ``ignorefile.ReadAll`` does.

    ``source`` is the file's *content* when it is ``str`` or ``bytes``, and a
    file to read when it is an ``os.PathLike`` (e.g. ``pathlib.Path``); a missing
    file raises ``FileNotFoundError`` (docker/cli treats a missing .dockerignore
    as empty, but that decision belongs to the caller that knows the context).
    Rules: a UTF-8 BOM is dropped; a line starting with ``#`` in column 1 is a
    comment (checked before trimming, like upstream); whitespace is trimmed;
    blank lines are dropped; ``!`` is split off, the rest is cleaned and a
    leading ``/`` removed (the context root is ``/``), then ``!`` is put back.
    A lone ``!`` is kept; :class:`PatternMatcher` rejects it.
    """
    if isinstance(source, os.PathLike):
        with open(source, "rb") as fh:
            data = fh.read()
    elif isinstance(source, str):
        data = os.fsencode(source)
    else:
        data = bytes(source)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # bufio.ScanLines yields no empty token after a final newline
    patterns: list[str] = []
    for number, raw in enumerate(lines):
        if number == 0 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if raw.endswith(b"\r"):
            raw = raw[:-1]  # ScanLines drops one trailing CR
        line = os.fsdecode(raw)
        if line.startswith("#"):
            continue
        line = line.strip(_GO_SPACE)
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip(_GO_SPACE)
        if line:
            line = go_clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        patterns.append("!" + line if invert else line)
    return patterns


def _parse_class(pat: str, pos: int) -> tuple[str, int]:
    """Parse a ``[...]`` class whose ``[`` is at ``pat[pos-1]``, as Go's ``matchChunk``.

    Returns a Python regex class and the index after ``]``; raises ValueError
    where ``filepath.Match`` returns ErrBadPattern.
    """
    n = len(pat)
    out = "["
    if pos < n and pat[pos] == "^":
        out += "^"
        pos += 1
    ranges = 0
    while True:
        if pos < n and pat[pos] == "]" and ranges:
            return out + "]", pos + 1
        low, pos = _class_char(pat, pos)
        high = low
        if pat[pos] == "-":
            high, pos = _class_char(pat, pos + 1)
        out += re.escape(low) + ("-" + re.escape(high) if high != low else "")
        ranges += 1


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


def _compile(pat: str, double_star: bool = True) -> tuple[str, re.Pattern[str] | None]:
    """Classify and translate a cleaned pattern like ``Pattern.compile`` upstream.

    ``*`` and ``?`` never match ``/``; ``**`` matches any number of directories
    (``**/`` eats its slash); a trailing ``**`` after plain text is a prefix
    match; a leading ``**`` followed by plain text is a suffix match.  With
    ``double_star=False`` (Go ``filepath.Match``) ``**`` is just ``*``.
    """
    out, kind, pos, n, i = [], _EXACT, 0, len(pat), 0
    while pos < n:
        ch = pat[pos]
        pos += 1
        if ch == "*" and double_star and pos < n and pat[pos] == "*":
            pos += 1
            if pos < n and pat[pos] == "/":
                pos += 1
            if pos == n:
                if kind == _EXACT:
                    kind = _PREFIX
                else:
                    out.append(".*")
                    kind = _REGEX
            else:
                out.append("(?:.*/)?")
                kind = _REGEX
            if i == 0:
                kind = _SUFFIX
        elif ch == "*":
            while not double_star and pos < n and pat[pos] == "*":
                pos += 1
            out.append("[^/]*")
            kind = _REGEX
        elif ch == "?":
            out.append("[^/]")
            kind = _REGEX
        elif ch == "\\":
            if pos >= n:
                raise ValueError("trailing backslash")
            out.append(re.escape(pat[pos]))
            pos += 1
            kind = _REGEX
        elif ch == "[":
            cls, pos = _parse_class(pat, pos)
            out.append(cls)
            kind = _REGEX
        elif ch == "]":
            out.append(r"\]")
            kind = _REGEX
        else:
            out.append(re.escape(ch))
        i += 1
    return kind, (re.compile("".join(out)) if kind == _REGEX or not double_star else None)


def go_match_name(pattern: str, name: str) -> bool:
    """Go ``filepath.Match`` for one path element (used by FollowPaths wildcards)."""
    try:
        regex = _compile(pattern, double_star=False)[1]
    except (ValueError, re.error):
        return False  # upstream ignores the error there: `ok, _ := filepath.Match(...)`
    return regex is not None and regex.fullmatch(name) is not None


@dataclass(frozen=True)
class Pattern:
    """One cleaned pattern; ``text`` excludes the leading ``!``."""

    text: str
    exclusion: bool
    kind: str
    regex: re.Pattern[str] | None

    def match(self, path: str) -> bool:
        if self.kind == _EXACT:
            return path == self.text
        if self.kind == _PREFIX:
            return path.startswith(self.text[:-2])
        if self.kind == _SUFFIX:
            suffix = self.text[2:]
            # Upstream quirk kept: "**foo" is a plain suffix test, so it matches "xfoo".
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.regex is not None
        return self.regex.fullmatch(path) is not None

    def without_trailing_glob(self) -> str:
        """fsutil's ``patternWithoutTrailingGlob``: drop one ``/**`` then one ``/*``."""
        text = self.text
        for tail in ("/**", "/*"):
            if text.endswith(tail):
                text = text[: -len(tail)]
        return text


MatchInfo = tuple[bool, ...]
"""Per-pattern "matched" flags of a directory, handed down to its children."""


class PatternMatcher:
    """Docker's pattern list: later patterns override earlier ones, ``!`` re-includes.

    ``matches`` answers "is this path excluded (selected)?" with
    ``MatchesOrParentMatches`` semantics: a pattern that matches any parent
    directory matches the path.  Patterns are taken as given (trimmed and
    cleaned, like ``patternmatcher.New``); use :func:`read_dockerignore` for
    the ``.dockerignore`` normalisation (leading ``/`` etc.).
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        parsed: list[Pattern] = []
        for raw in patterns:
            text = raw.strip(_GO_SPACE)
            if not text:
                continue
            text = go_clean(text)
            exclusion = text.startswith("!")
            if exclusion:
                if len(text) == 1:
                    raise ValueError(f"illegal exclusion pattern: {raw!r}")
                text = text[1:]
            try:
                kind, regex = _compile(text)
            except (ValueError, re.error) as exc:
                raise ValueError(f"bad pattern {raw!r}: {exc}") from exc
            parsed.append(Pattern(text, exclusion, kind, regex))
        self.patterns: Sequence[Pattern] = tuple(parsed)
        self.has_exclusions = any(p.exclusion for p in parsed)

    def __repr__(self) -> str:
        texts = ["!" * p.exclusion + p.text for p in self.patterns]
        return f"PatternMatcher({texts!r})"

    def matches(self, path: str) -> bool:
        """True if ``path`` (relative, ``/``-separated) or one of its parents is selected."""
        path = go_clean(path)
        if path == ".":
            return False  # upstream: "don't let them exclude everything"
        parents = path.split("/")[:-1]
        prefixes = ["/".join(parents[: k + 1]) for k in range(len(parents))]
        matched = False
        for pat in self.patterns:
            if pat.exclusion != matched:
                continue  # only patterns that could flip the current answer
            if pat.match(path) or any(pat.match(p) for p in prefixes):
                matched = not pat.exclusion
        return matched

    def match_with_parent(self, path: str, parent: MatchInfo = ()) -> tuple[bool, MatchInfo]:
        """``MatchesUsingParentResults``: what fsutil's walker uses.

        ``parent`` is the info returned for the containing directory (empty at
        the top level).  A pattern that matched the parent counts as matching
        without re-testing; others are tested on ``path`` alone.  This can
        differ from :meth:`matches` (``["a/b", "!a"]`` keeps ``a/b`` selected
        here), and the walker follows fsutil.
        """
        if parent and len(parent) != len(self.patterns):
            raise ValueError("wrong number of values in parent match info")
        matched = False
        info: list[bool] = []
        for idx, pat in enumerate(self.patterns):
            hit = bool(parent) and parent[idx]
            if not hit:
                if pat.exclusion != matched:
                    info.append(False)
                    continue
                hit = pat.match(path)
                if not hit and not parent and "/" in path:
                    parents = path.split("/")[:-1]
                    hit = any(pat.match("/".join(parents[: k + 1])) for k in range(len(parents)))
            info.append(hit)
            if hit:
                matched = not pat.exclusion
        return matched, tuple(info)

    def _could_select_under(self, dir_path: str, exclusion: bool) -> bool:
        candidates = [p for p in self.patterns if p.exclusion == exclusion]
        if any(_PATTERN_CHARS.intersection(p.without_trailing_glob()) for p in candidates):
            return True  # a glob could match anything: fsutil walks in
        prefix = dir_path + "/"
        return any((p.without_trailing_glob() + "/").startswith(prefix) for p in candidates)

    def may_match_under(self, dir_path: str) -> bool:
        """Could a (non-``!``) pattern select something below the unselected ``dir_path``?

        False lets a walker skip the directory: fsutil's include-pattern
        shortcut, only taken when every pattern is a plain path prefix.
        """
        return self._could_select_under(dir_path, exclusion=False)

    def may_reinclude_under(self, dir_path: str) -> bool:
        """Could a ``!`` exception re-include something below the selected ``dir_path``?

        False lets a walker skip the excluded directory whole (fsutil's
        exclude shortcut); any ``!`` pattern with a wildcard forces a descent.
        """
        return self._could_select_under(dir_path, exclusion=True)
