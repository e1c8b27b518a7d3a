"""JSON as Go's encoding/json reads it, for the metadata members engines decode.

Engines read ``manifest.json``, ``index.json``, manifests and configs with
Go's encoding/json, so artiload reads them the same way or refuses them: a
key matches a struct field case-insensitively (ASCII, plus the Kelvin sign
and the long s), keys that fold to the same name are refused, a field of the
wrong JSON type anywhere in the structs the engines decode into refuses the
whole document (as Go does), and the depth of nesting is bounded before
parsing. Every error names the member.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from airflow_provider_artiload.exceptions import ArchiveError
from airflow_provider_artiload.oci.image import is_digest

MAX_JSON_DEPTH = 64  # real manifests nest 4 deep; json.loads would recurse 100,000 deep
# Go's encoding/json folds a key to a struct field's ASCII name: ASCII case, and the two non-ASCII letters that
# fold to ASCII ones (KELVIN SIGN to k, LONG S to s).
_FOLD = str.maketrans({**{chr(c): chr(c + 32) for c in range(65, 91)}, "\u212a": "k", "\u017f": "s"})
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE_PAIR = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}")


def fold(key: str) -> str:
    """A JSON key as Go's encoding/json compares it with a struct field's name."""
    return key.translate(_FOLD)


class JsonObject(dict):
    """A JSON object as Go decodes it into a struct: a key matches a field whatever its case (see :func:`member`).

    Keys that fold to the same name are refused when the object is read, so
    the one that matches is the one Go's "last match wins" would take too.
    """

    folded: dict[str, str]


def _key(obj: Mapping[str, Any], key: str) -> str:
    """The key ``obj`` holds the struct field ``key`` under (``key`` itself when absent)."""
    return obj.folded.get(fold(key), key) if isinstance(obj, JsonObject) else key


def with_member(obj: JsonObject, key: str, value: Any) -> JsonObject:
    """A copy of ``obj`` with the struct field ``key`` set to ``value``, under the key ``obj`` holds it by."""
    copy = JsonObject({**obj, _key(obj, key): value})
    copy.folded = {fold(k): k for k in copy}
    return copy


def member(obj: Mapping[str, Any], key: str) -> Any:
    """``obj``'s value for the struct field ``key``, matched as Go matches it (case-insensitively)."""
    if isinstance(obj, JsonObject):
        actual = obj.folded.get(fold(key))
        return obj[actual] if actual is not None else None
    return obj.get(key)


# ---------------------------------------------------------------- the Go structs the engines decode into
#
# Go's encoding/json refuses a whole document when one field has the wrong JSON type (a number where its
# struct has a string, a string where a list...), even a field artiload never uses; so artiload checks every
# field of those structs the same way: a document the engine could not decode is refused here first.
# A struct is a dict of field name -> type; a list type is [element]; ("map", value) is a Go map.

STRING, INT, STRINGS, ANY_OBJECT = "string", "int", "[]string", "object"
STRING_MAP = ("map", STRING)
PLATFORM = {"architecture": STRING, "os": STRING, "os.version": STRING, "os.features": STRINGS, "variant": STRING}
DESCRIPTOR: dict[str, Any] = {
    "mediaType": STRING, "digest": STRING, "size": INT, "urls": STRINGS, "annotations": STRING_MAP,
    "data": STRING, "platform": PLATFORM, "artifactType": STRING,
}
INDEX_STRUCT = {"schemaVersion": INT, "mediaType": STRING, "artifactType": STRING, "manifests": [DESCRIPTOR],
                "subject": DESCRIPTOR, "annotations": STRING_MAP}
MANIFEST_STRUCT = {"schemaVersion": INT, "mediaType": STRING, "artifactType": STRING, "config": DESCRIPTOR,
                   "layers": [DESCRIPTOR], "subject": DESCRIPTOR, "annotations": STRING_MAP}
MANIFEST_ITEM = {"Config": STRING, "RepoTags": STRINGS, "Layers": STRINGS, "Parent": STRING, "LayerSources": ("map", DESCRIPTOR)}
CONFIG_STRUCT = {"architecture": STRING, "os": STRING, "os.version": STRING, "os.features": STRINGS, "variant": STRING,
                 "author": STRING, "created": STRING, "config": ANY_OBJECT, "container_config": ANY_OBJECT,
                 "rootfs": {"type": STRING, "diff_ids": STRINGS}, "history": [ANY_OBJECT]}
LAYOUT_STRUCT = {"imageLayoutVersion": STRING}
INT64 = 1 << 63


def check_struct(value: Any, schema: Any, *, where: str) -> None:
    """Refuse ``value`` unless Go's encoding/json decodes it into ``schema`` (null is every type's zero value)."""
    if value is None:
        return
    if schema == STRING:
        ok = isinstance(value, str)
    elif schema == INT:
        ok = isinstance(value, int) and not isinstance(value, bool) and -INT64 <= value < INT64
    elif schema == STRINGS:
        ok = isinstance(value, list) and all(v is None or isinstance(v, str) for v in value)
    elif schema == ANY_OBJECT:
        ok = isinstance(value, dict)
    elif isinstance(schema, list):
        ok = isinstance(value, list)
        for item in value if ok else ():
            check_struct(item, schema[0], where=where)
    elif isinstance(schema, tuple):
        ok = isinstance(value, dict)
        for key, item in value.items() if ok else ():
            check_struct(item, schema[1], where=f"{where} {key!r}")
    else:
        ok = isinstance(value, dict)
        if ok:
            fields = {fold(k): k for k in schema}
            for key, item in value.items():
                field = fields.get(fold(key))
                if field is not None:
                    check_struct(item, schema[field], where=f"{where} {field}")
    if not ok:
        raise ArchiveError(f"{where} is {shape_name(type(value))}, which Go cannot decode as {_schema_name(schema)}")


def _schema_name(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "a list"
    return "an object"


def load_json(raw: bytes, *, name: str, shape: type, struct: Any = None) -> Any:
    """Parse a metadata member, refusing the wrong shape with an error naming the file.

    ``struct``: the Go struct the engine decodes the member into (above); a
    field Go could not decode is refused too.
    """
    depth = _max_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise ArchiveError(f"{name} nests {depth} levels deep; image metadata never nests more than {MAX_JSON_DEPTH}")
    try:
        text = raw.decode("utf-8")  # strictly: Python would guess UTF-16/32 or skip a BOM, Go does neither
    except UnicodeDecodeError as exc:
        raise ArchiveError(f"{name} is not UTF-8 JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(_SURROGATE_PAIR.sub("", text)):
        raise ArchiveError(f"{name} escapes half a UTF-16 surrogate pair, which Go reads as U+FFFD and Python keeps")
    try:
        value = json.loads(text, object_pairs_hook=lambda pairs: _object(pairs, name), parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise ArchiveError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, shape):
        raise ArchiveError(f"{name} must hold a JSON {shape_name(shape)}, not {shape_name(type(value))}")
    if struct is not None:
        check_struct(value, struct, where=name)
    return value


def _object(pairs: list[tuple[str, Any]], name: str) -> JsonObject:
    """One JSON object; duplicate keys (also differing only in case) are refused: Go and Python could pick different ones."""
    obj = JsonObject(pairs)
    obj.folded = {}
    for key, _ in pairs:
        seen = obj.folded.get(fold(key))
        obj.folded[fold(key)] = key
        if seen is not None:
            raise ArchiveError(f"{name} has the key {key!r} twice ({seen!r} and {key!r}); Go reads keys regardless of case")
    return obj


def _no_constant(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON (Python reads it, Go does not)")


def _max_depth(raw: bytes) -> int:
    """Bracket depth outside strings, without recursing (a cheap guard before json.loads)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def shape_name(shape: type) -> str:
    shape = dict if issubclass(shape, dict) else shape
    return {dict: "object", list: "list", str: "string", type(None): "null"}.get(shape, shape.__name__)


def field_of(obj: Mapping[str, Any], key: str, shape: type, *, where: str, required: bool = True) -> Any:
    """``obj[key]`` if it has ``shape`` (a bool is no int); else an error naming the file and key."""
    value = member(obj, key)
    if value is None and not required:
        return shape()
    if not isinstance(value, shape) or isinstance(value, bool) and shape is int:
        raise ArchiveError(f"{where}: {key!r} must be a {shape_name(shape)}, got {shape_name(type(value))}")
    return value


def digest_field(obj: Mapping[str, Any], key: str, *, where: str) -> str:
    value = field_of(obj, key, str, where=where)
    if not is_digest(value):
        raise ArchiveError(f"{where}: {key!r} is {value[:80]!r}, not a sha256 digest")
    return value
