"""Image references (``[registry[:port]/]path[:tag]``), validated as the engine would.

Checked before any request, so a bad tag never reaches the engine after a
load has already succeeded. Grammar: distribution/reference.
"""

from __future__ import annotations

import re

from airflow_provider_artiload.exceptions import EndpointError

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
_PATH = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
MAX_NAME = 255


class InvalidReference(EndpointError):
    """An image name or tag does not follow Docker's reference grammar."""


def parse_reference(reference: str) -> tuple[str, str]:
    """Split ``reference`` into (repository, tag); the tag defaults to ``latest``."""
    text = (reference or "").strip()
    if "@" in text:
        raise InvalidReference(f"cannot tag with a digest reference {reference!r}; give name:tag")
    slash = text.rfind("/")
    colon = text.rfind(":")
    repository, tag = (text[:colon], text[colon + 1 :]) if colon > slash else (text, "latest")
    if not repository or len(repository) > MAX_NAME or not _valid_name(repository):
        raise InvalidReference(
            f"invalid image name {repository!r} in {reference!r}: lowercase letters, digits and "
            "separators (. _ __ -) only, e.g. registry:5000/team/app:2024-01-31"
        )
    if not _TAG.match(tag):
        raise InvalidReference(
            f"invalid tag {tag!r} in {reference!r}: up to 128 letters, digits, '_', '.', '-', not starting with '.' or '-'"
        )
    return repository, tag


def _valid_name(repository: str) -> bool:
    """Like Docker: the first component is a registry only if it has a '.' or ':' or is localhost."""
    first, slash, rest = repository.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return bool(_DOMAIN_RE.match(first) and _PATH.match(rest))
    return bool(_PATH.match(repository))


def is_image_id(value: str) -> bool:
    """A full ``sha256:<hex>`` image ID (what artifacts carry)."""
    return bool(re.fullmatch(r"sha256:[0-9a-f]{64}", value or ""))
