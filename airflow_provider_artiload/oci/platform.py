"""Platforms (``os/arch[/variant]``): parsing, normalising and matching, by containerd's rules.

One module decides which image of a multi-platform source a target takes,
so that an engine, a node and the build agree. The rules are containerd's
(``platforms.Normalize`` and ``platforms.Only``):

- names are normalised: ``aarch64`` is ``arm64``, ``x86_64`` is ``amd64``,
  ``armhf`` is ``arm/v7``, ``armel`` ``arm/v6``; ``arm64/v8`` is ``arm64``
  and ``amd64/v1`` is ``amd64`` (the default variants); a bare ``arm`` is
  ``arm/v7``. ``uname -m`` names (``armv7l``, ``armv6l``) are read too,
  which is how an engine's ``/info`` tells the variant;
- a target takes, in order of preference: its own platform; for ``arm/vN``
  the lower variants down to v5; for ``amd64/vN`` the lower variants, then
  ``386``; for ``arm64`` the 32-bit ``arm/v8`` … ``arm/v5``;
- an attestation manifest (``unknown/unknown``) is never an image.

Among the images a source lists, the best is the one earliest in that order;
equally good ones go by their order in the index.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_artiload.exceptions import ArtiloadError

_PART = re.compile(r"[a-z0-9_.-]+")
_ARCH = {
    "x86_64": ("amd64", None), "x86-64": ("amd64", None), "amd64": ("amd64", None),
    "aarch64": ("arm64", None), "arm64": ("arm64", None), "armv8l": ("arm", "v8"),
    "armhf": ("arm", "v7"), "armv7l": ("arm", "v7"), "armel": ("arm", "v6"), "armv6l": ("arm", "v6"),
    "armv5l": ("arm", "v5"), "i386": ("386", None), "i486": ("386", None), "i586": ("386", None),
    "i686": ("386", None),
}


class InvalidPlatform(ArtiloadError, ValueError):
    """Not ``os/arch[/variant]``."""


@dataclass(frozen=True)
class Platform:
    """A normalised platform; build one with :func:`parse` or :func:`normalize`."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    @property
    def is_attestation(self) -> bool:
        return self.os == "unknown" or self.architecture == "unknown"


def normalize(os: str, architecture: str, variant: str = "") -> Platform:
    """containerd's ``platforms.Normalize``, plus ``uname -m`` names."""
    os = (os or "").strip().lower()
    os = "darwin" if os == "macos" else os
    arch = (architecture or "").strip().lower()
    variant = (variant or "").strip().lower()
    arch, implied = _ARCH.get(arch, (arch, None))
    if implied and not variant:
        variant = implied
    if arch == "arm64":
        variant = "" if variant in ("8", "v8", "v8.0") else variant
    elif arch == "amd64":
        variant = "" if variant in ("1", "v1") else ("v" + variant if variant.isdigit() else variant)
    elif arch == "arm":
        variant = "v7" if variant in ("", "7") else ("v" + variant if variant.isdigit() else variant)
    return Platform(os, arch, variant)


def parse(text: str, *, what: str = "platform") -> Platform:
    """``os/arch[/variant]`` (``linux/arm64``, ``linux/arm/v7``), normalised; InvalidPlatform names ``what``."""
    parts = str(text or "").strip().lower().split("/")
    if len(parts) not in (2, 3) or not all(_PART.fullmatch(p) for p in parts):
        raise InvalidPlatform(f"{what} {text!r} is not os/arch or os/arch/variant, e.g. linux/amd64 or linux/arm/v7")
    return normalize(*parts)


def parse_list(value: str | Iterable[str] | None, *, what: str = "platforms") -> tuple[Platform, ...]:
    """A comma-separated text or a list of platforms, each parsed; duplicates (after normalising) dropped."""
    if value is None or value == "":
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[Platform] = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidPlatform(f"{what}: {item!r} is not a platform string")
        platform = parse(item, what=what)
        if platform not in out:
            out.append(platform)
    return tuple(out)


def of_descriptor(platform: Mapping[str, Any] | None) -> Platform | None:
    """The platform an index entry states (``{"os", "architecture", "variant"}``), or None when it states none."""
    if not isinstance(platform, Mapping):
        return None
    value = {str(k).lower(): v for k, v in platform.items()}
    os, arch = value.get("os"), value.get("architecture")
    if not isinstance(os, str) or not isinstance(arch, str) or not os or not arch:
        return None
    variant = value.get("variant")
    return normalize(os, arch, variant if isinstance(variant, str) else "")


def of_engine(version: Mapping[str, Any], info: Mapping[str, Any]) -> Platform | None:
    """An engine's platform: ``/version``'s ``Os``/``Arch`` (Go's names), the variant from ``/info``'s
    ``Architecture`` (``uname -m``: ``armv7l``...) where it tells one; None when neither says."""
    os = str(version.get("Os") or info.get("OSType") or "")
    arch = str(version.get("Arch") or "")
    machine = str(info.get("Architecture") or "")
    if not arch:
        arch = machine
    if not os or not arch:
        return None
    variant = ""
    if normalize(os, machine).architecture == normalize(os, arch).architecture:
        variant = normalize(os, machine).variant
    return normalize(os, arch, str(version.get("Variant") or "") or variant)


def candidates(target: Platform) -> list[Platform]:
    """What ``target`` takes, best first (containerd's ``platforms.Only``)."""
    out = [target]
    number = target.variant[1:] if target.variant.startswith("v") else ""
    if target.architecture == "amd64":
        if number.isdigit():
            out += [normalize(target.os, "amd64", f"v{n}") for n in range(int(number) - 1, 0, -1)]
        out.append(Platform(target.os, "386"))
    elif target.architecture == "arm" and number.isdigit():
        out += [Platform(target.os, "arm", f"v{n}") for n in range(int(number) - 1, 4, -1)]
    elif target.architecture == "arm64":
        out += candidates(Platform(target.os, "arm", target.variant or "v8"))
    return list(dict.fromkeys(out))


def matches(target: Platform, platform: Platform | None) -> bool:
    """Can ``target`` take an image of ``platform``? An attestation never."""
    return platform is not None and not platform.is_attestation and platform in candidates(target)


def best(target: Platform, platforms: Sequence[Platform | None]) -> int | None:
    """The position of the image ``target`` takes among ``platforms`` (an index's order), or None."""
    order = candidates(target)
    ranked = [(order.index(p), i) for i, p in enumerate(platforms) if p is not None and not p.is_attestation and p in order]
    return min(ranked)[1] if ranked else None


def same(a: Platform | None, b: Platform | None) -> bool:
    return a is not None and b is not None and a == b


def described(platforms: Iterable[Platform | None]) -> str:
    """``linux/amd64, linux/arm64`` for a message ("none named" when there are none)."""
    names = [str(p) for p in platforms if p is not None and not p.is_attestation]
    return ", ".join(dict.fromkeys(names)) or "none named"


__all__ = [
    "InvalidPlatform",
    "Platform",
    "best",
    "candidates",
    "described",
    "matches",
    "normalize",
    "of_descriptor",
    "of_engine",
    "parse",
    "parse_list",
]
