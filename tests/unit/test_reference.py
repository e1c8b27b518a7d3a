"""Image references follow distribution/reference's grammar, as the engine parses tags."""

from __future__ import annotations

import time

import pytest

from airflow_provider_artiload.oci.reference import (
    InvalidReference,
    Reference,
    is_image_id,
    normalize,
    parse,
    parse_reference,
)
from airflow_provider_artiload.exceptions import EndpointError

HEX64 = "0123456789abcdef" * 4
DIGEST = f"sha256:{HEX64}"


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("app", ("app", "latest")),
        ("app:20240131", ("app", "20240131")),
        ("team/app:v1.2_3-rc", ("team/app", "v1.2_3-rc")),
        ("registry.local:5000/team/app:1", ("registry.local:5000/team/app", "1")),
        ("localhost:5000/app", ("localhost:5000/app", "latest")),
        ("localhost/app", ("localhost/app", "latest")),
        ("Registry.Example.com/app:1", ("Registry.Example.com/app", "1")),
        ("Upper/case:1", ("Upper/case", "1")),  # not all lowercase: a registry host, like Docker
        ("10.0.0.1:5000/a/b/c:TAG", ("10.0.0.1:5000/a/b/c", "TAG")),
        ("[::1]:5000/app:_x", ("[::1]:5000/app", "_x")),
        ("[2001:db8::1]/app", ("[2001:db8::1]/app", "latest")),
        ("a__b/c-----d/e.f:1", ("a__b/c-----d/e.f", "1")),
        ("app:" + "t" * 128, ("app", "t" * 128)),
        ("reg.io/" + HEX64, ("reg.io/" + HEX64, "latest")),  # with a registry, hex is just a name
        ("x/" + "a" * 253, ("x/" + "a" * 253, "latest")),  # path of 255
        ("a" * 247, ("a" * 247, "latest")),  # library/ + 247 = 255
    ],
)
def test_valid(ref, expected):
    assert parse_reference(ref) == expected


@pytest.mark.parametrize(
    ("ref", "domain", "path"),
    [
        ("Foo/bar", "Foo", "bar"),
        ("FOO/bar/baz:1", "FOO", "bar/baz"),
        ("fOo/bar", "fOo", "bar"),
        ("foo/bar", "", "foo/bar"),
        ("localhost/x", "localhost", "x"),
        ("foo.com/bar", "foo.com", "bar"),
        ("foo:5000/bar", "foo:5000", "bar"),
        ("app", "", "app"),
    ],
)
def test_first_component_is_a_host_like_docker(ref, domain, path):
    parsed = parse(ref)
    assert (parsed.domain, parsed.path) == (domain, path)


@pytest.mark.parametrize(
    ("ref", "needle"),
    [
        ("App:1", "invalid image name 'App'"),
        ("team/App:1", "invalid image name 'team/App'"),
        ("Foo/Bar", "invalid image name 'Foo/Bar'"),
        ("reg.io/Team/app", "invalid image name 'reg.io/Team/app'"),
        ("localhost/APP", "invalid image name 'localhost/APP'"),
        ("aPP", "invalid image name 'aPP'"),
    ],
)
def test_uppercase_in_the_path_is_refused(ref, needle):
    with pytest.raises(InvalidReference, match=needle) as info:
        parse_reference(ref)
    assert "must be lowercase" in str(info.value)


@pytest.mark.parametrize("ref", [HEX64, HEX64 + ":1", HEX64 + "@" + DIGEST, "f" * 64, "0" * 64 + ":latest"])
def test_a_bare_64_hex_name_reads_as_an_image_id_and_is_refused(ref):
    with pytest.raises(InvalidReference, match="64-byte hexadecimal"):
        parse(ref)


@pytest.mark.parametrize("ok", ["a" * 63, "a" * 65, "g" * 64, "docker.io/" + "a" * 64, "x/" + "a" * 64])
def test_hex_like_names_that_are_not_ids_are_fine(ok):
    parse(ok)


@pytest.mark.parametrize("ref", ["x/" + "a" * 254, "a" * 248, "reg.io/" + "/".join(["abcdefg"] * 40), "docker.io/" + "a" * 248])
def test_the_length_limit_applies_to_the_normalised_path(ref):
    with pytest.raises(InvalidReference, match="longer than 255"):
        parse(ref)


def test_a_long_registry_does_not_count_against_the_path_limit():
    assert parse("r" * 300 + ".io/app").path == "app"


@pytest.mark.parametrize(
    "tag",
    ["tä", "ñ", "١٢", "ｖ1", "日本", "a\u0301", "x" * 129, "-x", ".x", "a:b", "{{ds}}", "", "v1+x"],
)
def test_tags_are_ascii_word_characters(tag):
    with pytest.raises(InvalidReference, match="invalid tag"):
        parse_reference(f"app:{tag}")


@pytest.mark.parametrize(
    "ref",
    [" app", "app ", "app:1 ", "\tapp", "app\n", "app:1\r\n", "a pp", "app:\u00a01", "\u2003app", "ap\x00p", "app\x7f"],
)
def test_whitespace_and_control_characters_are_refused_not_stripped(ref):
    with pytest.raises(InvalidReference, match="whitespace or control"):
        parse(ref)


@pytest.mark.parametrize(
    "digest",
    [
        "sha1:" + "a" * 40,
        "sha256:" + HEX64.upper(),
        "sha256:" + HEX64[:-1],
        "sha256:" + HEX64 + "0",
        "sha512:" + HEX64,
        "md5:" + "a" * 32,
        "sha256:",
        "sha256",
        ":" + HEX64,
        "sha256:" + "g" * 64,
        "1sha:" + HEX64,
    ],
)
def test_bad_digests_are_refused(digest):
    with pytest.raises(InvalidReference, match="invalid digest"):
        parse(f"ghcr.io/x/y@{digest}")


@pytest.mark.parametrize("domain", ["host:", "host:x", "-a.com", "a-.com", "a..com", "[::1]x", "[zz]:1", "[::1]:", "a_b.com", "[::1", "[::1]]"])
def test_bad_registries_are_refused(domain):
    with pytest.raises(InvalidReference, match="invalid registry"):
        parse(f"{domain}/app")


@pytest.mark.parametrize(
    ("ref", "needle"),
    [
        ("app:-x", "invalid tag '-x'"),
        ("app:" + "t" * 129, "invalid tag"),
        ("app@sha256:" + "0" * 64, "digest reference"),
        ("", "invalid image name ''"),
        ("a//b:1", "invalid image name 'a//b'"),
        ("app:{{ds}}", "invalid tag"),
        ("a..b", "invalid image name 'a..b'"),
        ("a___b", "invalid image name 'a___b'"),
        ("_a", "invalid image name '_a'"),
        ("a/", "invalid image name 'a/'"),
        ("reg.io/", "invalid image name 'reg.io/'"),
    ],
)
def test_invalid_names_the_part(ref, needle):
    with pytest.raises(InvalidReference, match=needle.replace("(", r"\(")):
        parse_reference(ref)


@pytest.mark.parametrize("value", [None, 1, b"app", ["app"]])
def test_non_strings_are_refused_with_our_error(value):
    with pytest.raises(InvalidReference):
        parse_reference(value)


def test_invalid_reference_is_an_endpoint_error():
    assert issubclass(InvalidReference, EndpointError)


@pytest.mark.parametrize(
    ("ref", "full"),
    [
        ("app", "docker.io/library/app:latest"),
        ("app:1", "docker.io/library/app:1"),
        ("team/app:1", "docker.io/team/app:1"),
        ("docker.io/app", "docker.io/library/app:latest"),
        ("index.docker.io/app:2", "docker.io/library/app:2"),
        ("index.docker.io/team/app", "docker.io/team/app:latest"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/app:1", "localhost:5000/app:1"),
        ("Foo/bar", "Foo/bar:latest"),
        (f"ghcr.io/x/y@{DIGEST}", f"ghcr.io/x/y@{DIGEST}"),
        (f"app@{DIGEST}", f"docker.io/library/app@{DIGEST}"),
        (f"app:1@{DIGEST}", f"docker.io/library/app@{DIGEST}"),  # the digest wins, as in ParseDockerRef
        ("[::1]:5000/app", "[::1]:5000/app:latest"),
    ],
)
def test_normalize(ref, full):
    assert normalize(ref) == full
    assert normalize(full) == full  # idempotent


def test_parse_keeps_every_part():
    assert parse(f"reg.io:5000/a/b:t@{DIGEST}") == Reference("reg.io:5000", "a/b", "t", DIGEST)


@pytest.mark.parametrize(
    "hostile",
    [
        "a" * 100_000 + "!",
        "a-" * 50_000 + "!",
        "a." * 50_000 + "/x!",
        ("a" * 30 + ".") * 3_000 + "-/x",
        "x/" + "a_" * 50_000 + "!",
        "app:" + "b" * 100_000,
        "app@sha256:" + "0" * 100_000,
        "[" + ":" * 100_000 + "/x",
    ],
)
def test_hostile_long_references_fail_fast_with_a_short_message(hostile):
    start = time.perf_counter()
    with pytest.raises(InvalidReference) as info:
        parse(hostile)
    assert time.perf_counter() - start < 2.0  # linear patterns: milliseconds; a backtracking one would hang
    assert len(str(info.value)) < 600


@pytest.mark.parametrize(
    ("value", "expected"),
    [(DIGEST, True), ("sha256:" + HEX64.upper(), False), (HEX64, False), ("sha256:" + HEX64[:-1], False), (None, False)],
)
def test_is_image_id(value, expected):
    assert is_image_id(value) is expected
