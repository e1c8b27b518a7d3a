"""Docker .dockerignore rules, from Docker's docs and moby/patternmatcher's tests (re-expressed)."""

from __future__ import annotations

import posixpath
import random
import re
import time
from pathlib import Path

import pytest

from airflow_provider_artiload.buildkit.context.dockerignore import PatternError, PatternMatcher, read_dockerignore
from airflow_provider_artiload.buildkit.context.globs import compile_pattern, go_clean, go_match_name
from airflow_provider_artiload.exceptions import BuildError


def _via_parent_results(pm: PatternMatcher, path: str) -> bool:
    """Match the way fsutil's walker does: parent results handed down level by level."""
    info: tuple[bool, ...] = ()
    parent = posixpath.dirname(path)
    if parent:
        parts = parent.split("/")
        for k in range(len(parts)):
            _, info = pm.match_with_parent("/".join(parts[: k + 1]), info)
    return pm.match_with_parent(path, info)[0]


# (patterns, path, excluded?) -- Docker documentation examples.
DOCS_CASES = [
    (["*/temp*"], "somedir/temporary.txt", True),
    (["*/temp*"], "somedir/temp", True),
    (["*/temp*"], "somedir/temp/inside.txt", True),  # a matched directory covers its children
    (["*/temp*"], "temp", False),  # only one level down
    (["*/temp*"], "a/b/temp", False),
    (["*/*/temp*"], "somedir/subdir/temporary.txt", True),
    (["*/*/temp*"], "somedir/temporary.txt", False),
    (["temp?"], "tempa", True),
    (["temp?"], "tempb", True),
    (["temp?"], "temp", False),
    (["temp?"], "tempab", False),
    (["temp?"], "dir/tempa", False),
    (["**/*.go"], "main.go", True),
    (["**/*.go"], "pkg/sub/util.go", True),
    (["**/*.go"], "pkg/util.gox", False),
    (["*.md", "!README.md"], "CHANGES.md", True),
    (["*.md", "!README.md"], "README.md", False),
    (["*.md", "!README.md"], "docs/guide.md", False),  # "*" does not cross "/"
    (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
    (["*.md", "!README*.md", "README-secret.md"], "README-public.md", False),
    (["*.md", "!README*.md", "README-secret.md"], "NOTES.md", True),
    (["*.md", "README-secret.md", "!README*.md"], "README-secret.md", False),  # last match wins
    (["*", "!src"], "src", False),
    (["*", "!src"], "src/app/main.py", False),
    (["*", "!src"], "setup.py", True),
]

# Single-pattern cases in the spirit of patternmatcher_test.go (own paths).
SINGLE_CASES = [
    ("**", "anything", True),
    ("**", "deep/er/path", True),
    ("**/", "x", True),
    ("**/**", "x/y", True),
    ("lib/**", "lib/a", True),
    ("lib/**", "lib/a/b/c", True),
    ("lib/**", "lib", False),
    ("lib/**", "library", False),
    ("**/cache", "cache", True),
    ("**/cache", "x/y/cache", True),
    ("**/cache", "x/y/cache/blob", True),
    ("**/cache", "x/mycache", False),
    ("**cache", "x/mycache", True),  # leading "**" + text is a plain suffix test upstream
    ("**/out/*", "a/out/f", True),
    ("**/out/**", "a/out/g/f", True),
    ("**/log*", "a/b/log", True),
    ("**/log*.txt", "a/b/log1.txt", True),
    ("**/**/*.txt", "a.txt", True),
    ("**/**/*.txt2", "a/b.txt", False),
    ("x**/*.txt", "x/a.txt", True),
    ("x**/*.txt", "x/y/z/a.txt", True),
    ("x/*.txt", "x/y/a.txt", False),
    ("x/*.txt**", "x/a.txt", True),
    ("v[1-3]", "v2", True),
    ("v[1-3]", "v4", False),
    ("v[1-3]", "v", False),
    ("v[^1-3]", "v9", True),
    ("v[^1-3]", "v2", False),
    (".*", ".env", True),
    (".*", "env", False),
    ("a.b", "axb", False),  # "." is literal
    ("a.b", "a.b", True),
    ("a?b", "axb", True),
    ("a?b", "a/b", False),  # "?" never matches "/"
    ("a*b", "a/b", False),
    ("a?b", "a☺b", True),  # "?" is one character, not one byte
    ("f(1)+{2}|$", "f(1)+{2}|$", True),  # regex metacharacters are literal
    ("dist/*.whl", "dist/pkg-1.0+local-py3-none-any.whl", True),
    ("[\\]x]", "]", True),
    ("[x\\-]", "-", True),
    ("[\\-x]", "y", False),
    ("[α-ω]*", "λx", True),
]

ESCAPE_AND_NORMALISE_CASES = [
    (["a\\*b"], "a*b", True),
    (["a\\*b"], "axb", False),
    (["\\[x\\]"], "[x]", True),
    (["\\[x\\]"], "x", False),
    (["a\\\\"], "a\\", True),
    (["\\#note"], "#note", True),
    (["./foo"], "foo", True),  # patterns are cleaned
    (["foo/"], "foo/bar", True),
    (["a/../b"], "b", True),
    (["  spaced  "], "spaced", True),
    (["foo"], "./foo", True),  # paths are cleaned too
    (["foo"], "foo/", True),
    (["/foo"], "foo", False),  # the matcher keeps a leading "/"; read_dockerignore strips it
    (["docs"], "docs/a/b.txt", True),
    (["docs"], "docsy", False),
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["docs/", "!docs/README.md"], "docs/README.md", False),
    (["docs/*", "!docs/README.md"], "docs/README.md", False),
    (["docs/*", "!docs/README.md"], "docs/other.md", True),
    (["!keep.go", "*.go"], "keep.go", True),  # an exception before the rule has no effect
    (["*.go", "!keep.go"], "keep.go", False),
    (["**", "!web"], "web/index.html", False),
    (["**", "!web", "web/tmp"], "web/tmp/x", True),
    (["*.go"], ".", False),  # the context root is never excluded
    ([], "anything", False),
]


@pytest.mark.parametrize(("patterns", "path", "excluded"), DOCS_CASES + ESCAPE_AND_NORMALISE_CASES)
def test_pattern_lists(patterns: list[str], path: str, excluded: bool) -> None:
    assert PatternMatcher(patterns).matches(path) is excluded


@pytest.mark.parametrize(("pattern", "path", "excluded"), SINGLE_CASES)
def test_single_patterns(pattern: str, path: str, excluded: bool) -> None:
    pm = PatternMatcher([pattern])
    assert pm.matches(path) is excluded
    assert _via_parent_results(pm, path) is excluded


@pytest.mark.parametrize(("patterns", "path", "excluded"), DOCS_CASES)
def test_parent_results_agree_on_documented_rules(patterns: list[str], path: str, excluded: bool) -> None:
    assert _via_parent_results(PatternMatcher(patterns), path) is excluded


def test_parent_results_differ_like_upstream() -> None:
    """An exception matching only a parent is skipped while nothing matched yet (fsutil keeps a/b out)."""
    pm = PatternMatcher(["a/b", "!a"])
    assert pm.matches("a/b") is False
    assert _via_parent_results(pm, "a/b") is True


def test_match_with_parent_checks_info_length() -> None:
    with pytest.raises(ValueError, match="wrong number"):
        PatternMatcher(["a", "b"]).match_with_parent("a/x", (True,))


@pytest.mark.parametrize(
    "bad",
    ["[", "a[", "[^", "[^bc", "[]a]", "[-]", "[x-]", "[-x]", "[a-b-c]", "\\", "x\\", "!", " ! ", "!/"]
    + ["[z-a]"],  # Go accepts it in New but fails on first match; we fail at once
)
def test_bad_patterns_raise_value_error_naming_the_pattern(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        PatternMatcher(["ok", bad])
    assert repr(bad) in str(info.value)


def test_blank_patterns_are_ignored_and_exceptions_flagged() -> None:
    pm = PatternMatcher(["docs", "", "   ", "  !docs/README.md  "])
    assert [(p.text, p.exclusion) for p in pm.patterns] == [("docs", False), ("docs/README.md", True)]
    assert pm.has_exclusions
    assert not PatternMatcher(["docs"]).has_exclusions


@pytest.mark.parametrize(
    ("patterns", "directory", "may_reinclude"),
    [
        (["build"], "build", False),  # no exceptions at all: skip the directory
        (["build", "!build/keep/me.txt"], "build", True),
        (["build", "!build/keep/me.txt"], "build/keep", True),
        (["build", "!build/keep/me.txt"], "build/other", False),
        (["build", "!build/keep/**"], "build/keep", True),
        (["build", "!other"], "build", False),
        (["build", "!**/*.keep"], "build", True),  # a wildcard exception could match anywhere
        (["build", "!build/*/x"], "build/zzz", True),
    ],
)
def test_may_reinclude_under(patterns: list[str], directory: str, may_reinclude: bool) -> None:
    assert PatternMatcher(patterns).may_reinclude_under(directory) is may_reinclude


@pytest.mark.parametrize(
    ("patterns", "directory", "may_match"),
    [
        (["src/app.py"], "src", True),
        (["src/app.py"], "tests", False),
        (["src/**"], "src", True),
        (["src"], "srcx", False),
        (["*.py"], "anything", True),
        (["!src", "lib/x"], "src", False),  # "!" patterns never select
    ],
)
def test_may_match_under(patterns: list[str], directory: str, may_match: bool) -> None:
    assert PatternMatcher(patterns).may_match_under(directory) is may_match


def test_read_dockerignore_rules() -> None:
    text = (
        "\ufeff# comment on the first line, after a BOM\n"
        "node_modules\r\n"
        "/abs/path\n"
        "\n"
        "   \t\n"
        "  # not a comment: only column 1 counts\n"
        "! /inverted/abs\n"
        "!keep.txt\n"
        "./rel/./x/../y//\n"
        "/\n"
        "!\n"
        "last-no-newline"
    )
    assert read_dockerignore(text) == [
        "node_modules",
        "abs/path",
        "# not a comment: only column 1 counts",
        "!inverted/abs",
        "!keep.txt",
        "rel/y",
        "/",
        "!",
        "last-no-newline",
    ]


def test_read_dockerignore_from_path_bytes_and_non_utf8(tmp_path: Path) -> None:
    data = b"*.log\ncaf\xe9/\n"
    f = tmp_path / ".dockerignore"
    f.write_bytes(data)
    expected = ["*.log", "caf\udce9"]
    assert read_dockerignore(f) == expected
    assert read_dockerignore(data) == expected
    assert PatternMatcher(expected).matches("caf\udce9/x")
    assert read_dockerignore("") == []
    with pytest.raises(FileNotFoundError):
        read_dockerignore(tmp_path / "missing")


def test_read_then_match_end_to_end() -> None:
    pm = PatternMatcher(read_dockerignore("# docs example\n*/temp*\n*/*/temp*\ntemp?\n/build\n!build/keep\n"))
    assert pm.matches("dir/temporary.txt")
    assert pm.matches("build/out.o")
    assert not pm.matches("build/keep")
    assert not pm.matches("Dockerfile")


@pytest.mark.parametrize(
    ("raw", "clean"),
    [("", "."), ("a//b", "a/b"), ("./a/", "a"), ("a/../..", ".."), ("//a", "/a"), ("///a", "/a")]
    + [("/..", "/")],
)
def test_go_clean(raw: str, clean: str) -> None:
    assert go_clean(raw) == clean


@pytest.mark.parametrize(
    ("pattern", "name", "matched"),
    [("Docker*", "Dockerfile", True), ("a**b", "axyb", True), ("?", "ab", False), ("[", "[", False)],
)
def test_go_match_name(pattern: str, name: str, matched: bool) -> None:
    assert go_match_name(pattern, name) is matched


# --- hardening: bad patterns are build errors, matching never backtracks -------------------


@pytest.mark.parametrize("bad", ["[", "a[", "[abc", "[^", "x/[a-", "[\\", "[z-a]", "\\", "!"])
def test_bad_patterns_are_build_errors_naming_the_pattern_and_the_file(bad: str) -> None:
    with pytest.raises(BuildError) as info:
        PatternMatcher(["ok", bad])
    message = str(info.value)
    assert repr(bad) in message and ".dockerignore" in message
    assert isinstance(info.value, PatternError)


def test_the_source_of_the_patterns_is_named() -> None:
    with pytest.raises(PatternError, match="in include-patterns"):
        PatternMatcher(["[unterminated"], source="include-patterns")


# Patterns that make a backtracking regex engine take exponential or high-polynomial time.
PATHOLOGICAL = [
    ("*a*a*a*a*a*a*a*a*a*b", "a" * 20_000),
    ("*a*a*a*a*a*a*a*a*a*b", "/".join(["a" * 200] * 100)),
    ("**/**/**/**/**/x", "a/" * 10_000 + "y"),
    ("**/**/**/**/**/**/**/**/x?", "ab/" * 5_000 + "zz"),
    ("?" * 300 + "b", "a" * 20_000),
    ("*" * 50 + "b", "a" * 20_000),
    ("a**a**a**a**a**a**a**b", "a" * 5_000),
    ("[a-z]*[a-z]*[a-z]*[a-z]*[a-z]*[a-z]*!", "q" * 20_000),
    ("x/" + "\\a*" * 30 + "c", "x/" + "a" * 20_000),
]


@pytest.mark.parametrize(("pattern", "path"), PATHOLOGICAL)
def test_pathological_patterns_cost_at_most_pattern_times_path(pattern: str, path: str) -> None:
    glob, path = compile_pattern(pattern)[1], path[:2_000]  # the bound is per character; the memo-free run is slow
    assert glob is not None
    assert glob.work(path) <= (len(glob.ops) + 2) * (len(path) + 1)  # the automaton's bound: no backtracking


@pytest.mark.parametrize(("pattern", "path"), PATHOLOGICAL)
def test_pathological_patterns_finish_quickly(pattern: str, path: str) -> None:
    pm = PatternMatcher([pattern])
    start = time.perf_counter()
    pm.matches(path)
    pm.match_with_parent(path)
    assert time.perf_counter() - start < 2.0  # Python's re took longer than 20 s on 200 characters of the first


def test_deep_paths_check_parents_in_one_pass() -> None:
    """MatchesOrParentMatches tests every parent: done by one scan, not one match per parent."""
    path = "/".join(["d"] * 20_000) + "/f"
    glob = compile_pattern("*/x?")[1]
    assert glob is not None and not glob.match_or_parent(path)
    start = time.perf_counter()
    for pattern in ("d/d/q*", "**d/q", "d/d/d/q", "*/q"):
        assert PatternMatcher([pattern]).matches(path) is False
    assert PatternMatcher(["d/d/d"]).matches(path) is True
    assert time.perf_counter() - start < 2.0


def _reference_regex(pat: str) -> re.Pattern[str] | None:
    """The straightforward regex translation (Go's compile), for short inputs only: a test oracle."""
    out, kind, pos, i = "", "exact", 0, 0
    while pos < len(pat):
        ch, pos = pat[pos], pos + 1
        if ch == "*" and pat[pos : pos + 1] == "*":
            pos += 2 if pat[pos + 1 : pos + 2] == "/" else 1
            if pos >= len(pat) and kind == "exact":
                kind = "prefix"
            else:
                out, kind = out + (".*" if pos >= len(pat) else "(?:.*/)?"), "regex"
            kind = "suffix" if i == 0 else kind
        elif ch in "*?":
            out, kind = out + ("[^/]*" if ch == "*" else "[^/]"), "regex"
        elif ch == "\\":
            out, pos, kind = out + re.escape(pat[pos]), pos + 1, "regex"
        elif ch == "[":
            end = pat.index("]", pos + 1)
            out, pos, kind = out + "[" + pat[pos:end].replace("\\", "\\\\") + "]", end + 1, "regex"
        else:
            out, kind = out + re.escape(ch), ("regex" if ch == "]" else kind)
        i += 1
    return re.compile(out) if kind == "regex" else None


def test_the_automaton_agrees_with_a_regex_translation_on_random_patterns() -> None:
    rng = random.Random(11)
    atoms = ["a", "b", "/", "*", "**", "**/", "?", "[ab]", "[^a]", "\\*", ".", "]"]
    for _ in range(3_000):
        pattern = "".join(rng.choice(atoms) for _ in range(rng.randint(1, 6)))
        path = "".join(rng.choice("ab/.*\n") for _ in range(rng.randint(0, 8)))
        kind, glob = compile_pattern(pattern)
        oracle = _reference_regex(pattern)
        if kind == "regex":
            assert oracle is not None and glob is not None
            assert glob.match(path) is (oracle.fullmatch(path) is not None), (pattern, path)
