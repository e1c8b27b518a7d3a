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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from airflow_provider_artiload.buildkit.context.globs import (
    EXACT,
    PREFIX,
    REGEX,
    SUFFIX,
    Glob,
    compile_pattern,
    go_clean,
)
from airflow_provider_artiload.exceptions import BuildError

__all__ = [
    "MatchInfo",
    "Pattern",
    "PatternError",
    "PatternMatcher",
    "read_dockerignore",
]

# Go's unicode.IsSpace set, used by strings.TrimSpace (str.strip() also strips \x1c-\x1f).
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
# Characters that make fsutil treat a pattern as more than a plain prefix (filter.go, unix).
_PATTERN_CHARS = frozenset("*[]?^\\")


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


class PatternError(BuildError, ValueError):
    """A pattern Docker would reject (``filepath.ErrBadPattern``); names the pattern and its file."""


@dataclass(frozen=True)
class Pattern:
    """One cleaned pattern; ``text`` excludes the leading ``!``."""

    text: str
    exclusion: bool
    kind: str
    glob: Glob | None

    def match(self, path: str) -> bool:
        if self.kind == EXACT:
            return path == self.text
        if self.kind == PREFIX:
            return path.startswith(self.text[:-2])
        if self.kind == SUFFIX:
            suffix = self.text[2:]
            # Upstream quirk kept: "**foo" is a plain suffix test, so it matches "xfoo".
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.glob is not None
        return self.glob.match(path)

    def match_or_parent(self, path: str) -> bool:
        """``match`` on ``path`` or any parent directory of it (``a``, ``a/b`` for ``a/b/c``), without re-scanning."""
        if self.kind == REGEX:
            assert self.glob is not None
            return self.glob.match_or_parent(path)
        if self.match(path):
            return True
        if self.kind == EXACT:
            size = len(self.text)
            return len(path) > size and path[size] == "/" and path.startswith(self.text)
        if self.kind == SUFFIX:
            return any(self._suffix_matches_prefix(path, i) for i, c in enumerate(path) if c == "/")
        return False  # a prefix match on a parent is a prefix match on the path

    def _suffix_matches_prefix(self, path: str, end: int) -> bool:
        """The suffix test on ``path[:end]``, without slicing."""
        suffix = self.text[2:]
        if path.endswith(suffix, 0, end):
            return True
        return suffix.startswith("/") and end == len(suffix) - 1 and path.startswith(suffix[1:])

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

    def __init__(self, patterns: Iterable[str], *, source: str = ".dockerignore") -> None:
        parsed: list[Pattern] = []
        for raw in patterns:
            text = raw.strip(_GO_SPACE)
            if not text:
                continue
            text = go_clean(text)
            exclusion = text.startswith("!")
            if exclusion:
                if len(text) == 1:
                    raise PatternError(f"illegal exclusion pattern {raw!r} in {source}: '!' needs a pattern after it")
                text = text[1:]
            try:
                kind, glob = compile_pattern(text)
            except ValueError as exc:
                raise PatternError(f"bad pattern {raw!r} in {source}: {exc}") from None
            parsed.append(Pattern(text, exclusion, kind, glob))
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
        matched = False
        for pat in self.patterns:
            if pat.exclusion != matched:
                continue  # only patterns that could flip the current answer
            if pat.match_or_parent(path):
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
                hit = pat.match_or_parent(path) if not parent else pat.match(path)
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
