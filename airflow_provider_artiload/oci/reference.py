"""Image references (``[registry[:port]/]path[:tag][@digest]``), validated as the engine would.

Checked before any request, so a bad tag never reaches the engine after a
load has already succeeded. The grammar and the normalisation are those of
distribution/reference (``regexp.go``, ``ParseNormalizedNamed``), which the
engine applies to tags:

- the first ``/``-separated component is a registry host when it contains
  ``.`` or ``:``, is ``localhost``, or is not all lowercase (``Foo/bar`` is
  host ``Foo``); every path component is lowercase;
- a bare name of 64 hex digits reads as an image ID and is refused (Docker
  refuses it untagged; we refuse it tagged too, as it is never meant);
- the path, as normalised (``app`` -> ``library/app``), is at most 255
  characters; tags are ASCII ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``;
- digests are ``algorithm:hex`` with a known algorithm and its hex length;
- whitespace is refused, never stripped: it is a templating slip.

Every pattern here is separator-delimited (no nested ambiguous repetition), so
matching stays linear even on hostile input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from airflow_provider_artiload.exceptions import EndpointError

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_IPV6 = re.compile(r"\[[0-9A-Fa-f:]+\]")
_PORT = re.compile(r"[0-9]+")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_IMAGE_ID_HEX = re.compile(r"[a-f0-9]{64}")
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}  # what go-digest registers
DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
MAX_NAME = 255
TAG_HINT = "up to 128 ASCII letters, digits, '_', '.', '-', not starting with '.' or '-'"
NAME_HINT = "lowercase letters, digits and separators (. _ __ -) only, e.g. registry:5000/team/app:2024-01-31"


class InvalidReference(EndpointError):
    """An image name or tag does not follow Docker's reference grammar."""


@dataclass(frozen=True)
class Reference:
    """A parsed reference; ``domain`` is "" when none was written."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """The name as written, without tag or digest."""
        return f"{self.domain}/{self.path}" if self.domain else self.path


def parse(reference: str) -> Reference:
    """Parse a reference with Docker's grammar, or raise :class:`InvalidReference` naming the bad part."""
    text = _checked_text(reference)
    domain, rest = _split_domain(text)
    rest, at, digest = rest.partition("@")
    path, colon, tag = rest.partition(":")
    name = f"{domain}/{path}" if domain else path
    if domain:
        _check_domain(domain, text)
    _check_path(domain, path, name, text)
    if colon:
        _check_tag(tag, text)
    if at:
        _check_digest(digest, text)
    return Reference(domain, path, tag if colon else None, digest if at else None)


def parse_reference(reference: str) -> tuple[str, str]:
    """Split ``reference`` into (repository, tag) for tagging; the tag defaults to ``latest``."""
    if isinstance(reference, str) and "@" in reference:
        raise InvalidReference(f"cannot tag with a digest reference {_q(reference)}; give name:tag")
    ref = parse(reference)
    return ref.repository, ref.tag or "latest"


def normalize(reference: str) -> str:
    """The fully qualified name (``app:1`` -> ``docker.io/library/app:1``), as the engine stores it.

    Like ``ParseDockerRef``: no tag means ``latest``; with a digest, the
    digest alone identifies the image and a tag is dropped.
    """
    ref = parse(reference)
    domain = DEFAULT_DOMAIN if ref.domain in ("", LEGACY_DOMAIN) else ref.domain
    name = f"{domain}/{_canonical_path(domain, ref.path)}"
    return f"{name}@{ref.digest}" if ref.digest else f"{name}:{ref.tag or 'latest'}"


def is_image_id(value: str) -> bool:
    """A full ``sha256:<hex>`` image ID (what artifacts carry)."""
    return isinstance(value, str) and value.startswith("sha256:") and bool(_IMAGE_ID_HEX.fullmatch(value[7:]))


def _checked_text(reference: object) -> str:
    if not isinstance(reference, str):
        raise InvalidReference(f"an image reference must be a string, got {_q(reference)}")
    if not reference:
        raise InvalidReference(f"invalid image name '' in {_q(reference)}: empty reference")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in reference):
        raise InvalidReference(f"invalid image reference {_q(reference)}: whitespace or control characters")
    return reference


def _split_domain(text: str) -> tuple[str, str]:
    """distribution/reference's ``splitDockerDomain``, without the normalisation."""
    first, slash, rest = text.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        return first, rest
    return "", text


def _check_domain(domain: str, text: str) -> None:
    if not _valid_domain(domain):
        raise InvalidReference(f"invalid registry {_q(domain)} in {_q(text)}: a host name, IPv4 or [IPv6], then :port")


def _valid_domain(domain: str) -> bool:
    if domain.startswith("["):
        host, bracket, after = domain.partition("]")
        host_ok = bool(bracket) and bool(_IPV6.fullmatch(host + "]"))
        if after and not after.startswith(":"):
            return False
        port = after[1:] if after else None
    else:
        host, colon, after = domain.partition(":")
        host_ok = all(_DOMAIN_LABEL.fullmatch(label) for label in host.split("."))
        port = after if colon else None
    return host_ok and (port is None or bool(_PORT.fullmatch(port)))


def _check_path(domain: str, path: str, name: str, text: str) -> None:
    if not path or not all(_COMPONENT.fullmatch(part) for part in path.split("/")):
        why = "repository name must be lowercase" if path.lower() != path else NAME_HINT
        raise InvalidReference(f"invalid image name {_q(name)} in {_q(text)}: {why}")
    if not domain and _IMAGE_ID_HEX.fullmatch(path):
        why = "cannot specify 64-byte hexadecimal strings (that is an image ID)"
        raise InvalidReference(f"invalid image name {_q(name)} in {_q(text)}: {why}")
    if len(_canonical_path(domain or DEFAULT_DOMAIN, path)) > MAX_NAME:
        raise InvalidReference(f"invalid image name {_q(name)}: longer than {MAX_NAME} characters")


def _check_tag(tag: str, text: str) -> None:
    if not _TAG.fullmatch(tag):
        raise InvalidReference(f"invalid tag {_q(tag)} in {_q(text)}: {TAG_HINT}")


def _check_digest(digest: str, text: str) -> None:
    algorithm, _, hex_part = digest.partition(":")
    expected = DIGEST_HEX_LENGTHS.get(algorithm)
    if not _DIGEST.fullmatch(digest) or expected is None or not re.fullmatch(rf"[a-f0-9]{{{expected}}}", hex_part):
        raise InvalidReference(
            f"invalid digest {_q(digest)} in {_q(text)}: algorithm:hex, e.g. sha256: and 64 lowercase hex digits"
        )


def _canonical_path(domain: str, path: str) -> str:
    """Docker Hub's official images live under ``library/``."""
    return f"library/{path}" if domain in (DEFAULT_DOMAIN, LEGACY_DOMAIN) and "/" not in path else path


def _q(text: object) -> str:
    """Quoted for a message, cut short: a hostile 100 kB reference must not flood the task log."""
    shown = repr(text)
    return shown if len(shown) <= 120 else shown[:100] + f"...' ({len(str(text))} characters)"
