"""oci/platform.py: containerd's platform rules (Normalize, Only), the one place targets and sources are matched."""

from __future__ import annotations

import pytest

from airflow_provider_artiload.oci.platform import (
    InvalidPlatform,
    Platform,
    best,
    candidates,
    described,
    matches,
    normalize,
    of_descriptor,
    of_engine,
    parse,
    parse_list,
)


@pytest.mark.parametrize("text, expected", [
    ("linux/arm64", "linux/arm64"),
    ("linux/arm64/v8", "linux/arm64"),
    ("linux/aarch64", "linux/arm64"),
    ("linux/x86_64", "linux/amd64"),
    ("linux/amd64/v1", "linux/amd64"),
    ("linux/amd64/v3", "linux/amd64/v3"),
    ("linux/arm", "linux/arm/v7"),
    ("linux/armhf", "linux/arm/v7"),
    ("linux/armel", "linux/arm/v6"),
    ("linux/arm/7", "linux/arm/v7"),
    ("Linux/ARM64", "linux/arm64"),
    ("linux/i686", "linux/386"),
    ("linux/arm64/v9", "linux/arm64/v9"),
])
def test_names_are_normalised_as_containerd_does(text, expected):
    assert str(parse(text)) == expected


@pytest.mark.parametrize("text", ["", "linux", "linux/", "/amd64", "linux/amd64/v8/x", "linux/am d64", None, "linux/[x]"])
def test_a_bad_platform_is_refused_naming_it(text):
    with pytest.raises(InvalidPlatform, match="os/arch"):
        parse(text, what="platform")


def test_arm64_is_the_same_as_arm64_v8():
    assert parse("linux/arm64") == parse("linux/arm64/v8")
    assert matches(parse("linux/arm64/v8"), parse("linux/arm64"))
    assert matches(parse("linux/arm64"), parse("linux/arm64/v8"))


def test_an_arm_v7_target_takes_v6_and_v5_but_not_v8():
    target = parse("linux/arm/v7")
    assert [str(p) for p in candidates(target)] == ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]
    assert matches(target, parse("linux/arm/v6"))
    assert not matches(parse("linux/arm/v6"), parse("linux/arm/v7"))
    assert not matches(target, parse("linux/arm/v8"))


def test_amd64_variants_take_lower_ones_then_386():
    assert [str(p) for p in candidates(parse("linux/amd64/v3"))] == [
        "linux/amd64/v3", "linux/amd64/v2", "linux/amd64", "linux/386"]
    assert matches(parse("linux/amd64/v2"), parse("linux/amd64"))
    assert not matches(parse("linux/amd64"), parse("linux/amd64/v2"))
    assert [str(p) for p in candidates(parse("linux/amd64"))] == ["linux/amd64", "linux/386"]


def test_arm64_takes_its_own_then_32_bit_arm():
    assert [str(p) for p in candidates(parse("linux/arm64"))] == [
        "linux/arm64", "linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]
    assert not matches(parse("linux/arm64"), parse("linux/amd64"))
    assert not matches(parse("linux/amd64"), parse("linux/arm64"))


def test_an_attestation_is_never_chosen():
    attestation = Platform("unknown", "unknown")
    assert attestation.is_attestation
    assert not matches(Platform("unknown", "unknown"), attestation)
    assert best(parse("linux/amd64"), [attestation, parse("linux/amd64")]) == 1
    assert best(parse("linux/arm64"), [attestation, parse("linux/amd64")]) is None


def test_best_prefers_the_exact_platform_over_an_earlier_compatible_one():
    listed = [parse("linux/arm/v6"), parse("linux/amd64"), parse("linux/arm/v7")]
    assert best(parse("linux/arm/v7"), listed) == 2
    assert best(parse("linux/arm/v8"), listed) == 2
    assert best(parse("linux/arm/v6"), listed) == 0
    assert best(parse("linux/amd64"), [None, parse("linux/arm64"), parse("linux/amd64")]) == 2
    # the same platform twice: the first in the index
    assert best(parse("linux/amd64"), [parse("linux/amd64/v1"), parse("linux/amd64")]) == 0


def test_descriptor_platforms_and_lists():
    assert of_descriptor({"os": "linux", "architecture": "arm64", "variant": "v8"}) == parse("linux/arm64")
    assert of_descriptor({"OS": "linux", "Architecture": "amd64"}) == parse("linux/amd64")  # Go folds case
    assert of_descriptor(None) is None and of_descriptor({"os": "linux"}) is None
    assert parse_list("linux/amd64, linux/arm64/v8,linux/arm64") == (parse("linux/amd64"), parse("linux/arm64"))
    assert parse_list(["linux/arm64"]) == (parse("linux/arm64"),)
    assert parse_list(None) == () and parse_list("") == ()
    with pytest.raises(InvalidPlatform):
        parse_list([3])
    assert described([parse("linux/amd64"), Platform("unknown", "unknown"), parse("linux/arm64")]) == "linux/amd64, linux/arm64"
    assert described([]) == "none named"


@pytest.mark.parametrize("version, info, expected", [
    ({"Os": "linux", "Arch": "amd64"}, {"OSType": "linux", "Architecture": "x86_64"}, "linux/amd64"),
    ({"Os": "linux", "Arch": "arm64"}, {"OSType": "linux", "Architecture": "aarch64"}, "linux/arm64"),
    ({"Os": "linux", "Arch": "arm"}, {"OSType": "linux", "Architecture": "armv6l"}, "linux/arm/v6"),
    ({"Os": "linux", "Arch": "arm"}, {"OSType": "linux", "Architecture": "armv7l"}, "linux/arm/v7"),
    ({}, {"OSType": "linux", "Architecture": "aarch64"}, "linux/arm64"),
    ({"Os": "linux", "Arch": "arm64"}, {"Architecture": "armv7l"}, "linux/arm64"),  # a 32-bit userland: Go's arch wins
])
def test_an_engines_platform_from_version_and_info(version, info, expected):
    assert str(of_engine(version, info)) == expected


def test_an_engine_that_says_nothing_has_no_platform():
    assert of_engine({}, {}) is None


def test_normalize_keeps_unknown_names():
    assert normalize("linux", "riscv64") == Platform("linux", "riscv64")
    assert normalize("macos", "arm64") == Platform("darwin", "arm64")
