"""Reframe, never forward: the tar an engine receives is one artiload wrote.

The engine reads an archive with Go's ``archive/tar`` and ``encoding/json``;
artiload reads it in Python. Wherever the two could disagree (a header
field, a JSON key, a compression magic), a forwarded archive could show
artiload one image and the engine another. So nothing of the source's
framing is forwarded. From the plain tar (outer compression removed) that passed
:class:`~.verify.VerifiedArchive`, :func:`reframe` writes a new one:

- **blob bodies** (configs, manifests, indexes, layers) stream through
  byte for byte, so every digest and image ID is unchanged; each under a
  fresh header from the one tar writer (:func:`.tar.member_header`: USTAR,
  or GNU base-256 at 8 GiB), preceded by its directory's header;
- **metadata** (``manifest.json``, and for an image with a manifest blob
  ``oci-layout`` and ``index.json``) is written from the checked model at
  the end: canonical JSON, only the fields the engine reads, one entry per
  image artiload reports (one image), carrying the names artiload reports
  (or none: an engine then records the image unnamed, see
  ``transfer/engine.py``);
- **everything else is dropped**: the source's own metadata, v1 ``json``
  and ``VERSION`` files, directories, links (the metadata names the member a
  link resolves to), extended headers, and any member the model does not
  name.

Which members are the model's blobs:

- **Known up front** (an indexed local file): ``Framing.blobs``, from
  :func:`named_blobs`; only those are written, the rest dropped unread.
- **Learned at the end** (a stream whose metadata may come last: an
  engine's export, a remote or compressed file): the source's own metadata
  files (``manifest.json``, ``index.json``, ``oci-layout``,
  ``repositories``, a legacy save's ``<v1 id>/json`` and ``VERSION``) are
  dropped at their header. A small JSON member (what the scanner keeps:
  configs, manifests, indexes, and the v1 configs Docker 25+ saves as
  blobs) is held, and written at the end only if :func:`named_blobs` lists
  it, from the exact bytes the model was read from. Any other member (a
  layer) is written as it passes: a small one from its first byte, once
  that byte shows it is no JSON.
  At the end, if a member written so is not one the image names, the
  stream is refused with an ArchiveError *before* the metadata and the end
  marker are written. The
  engine then has blobs without any ``manifest.json`` or ``index.json``
  and the upload dies unterminated: both moby's ``tarexport`` and
  containerd's importer read the whole tar before acting on the metadata,
  so it loads nothing, and an unnamed blob never becomes part of an image.

Either way the metadata, the only thing an engine acts on, is written
after every check of the source passed, since
:class:`~.verify.VerifiedArchive` withholds the source's last chunk until
then.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any

from airflow_provider_artiload.exceptions import ArchiveError, ArtiloadError
from airflow_provider_artiload.oci.archive import JSON_MEMBER_LIMIT, ArchiveIndex, ArchiveScanner, Member
from airflow_provider_artiload.oci.image import INDEXES, MANIFESTS, OCI_INDEX, OCI_MANIFEST, Image, blob_path, is_digest
from airflow_provider_artiload.oci.manifests import choose, listed, platforms_of
from airflow_provider_artiload.oci.gojson import load_json
from airflow_provider_artiload.oci.platform import parse as parse_platform
from airflow_provider_artiload.oci.reference import normalize, parse
from airflow_provider_artiload.oci.tar import END, directory_header, member_header, padding

# the source's own metadata, never forwarded (legacy saves: <v1 id>/json and /VERSION files)
METADATA_NAME = re.compile(r"manifest\.json|index\.json|oci-layout|repositories|.*/json|.*/VERSION")
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
MAX_DEPTH = 8  # index -> index -> manifest -> config/layers is 3; docker save nests 2

DROP, STREAM, HOLD = "drop", "stream", "hold"
JSON_FIRST = (b"{", b"[", b" ", b"\t", b"\r", b"\n")  # what JSON may start with (the scanner keeps it, whitespace first too)
Position = Callable[[str, ArchiveIndex], "int | None"]  # which layer a streamed member is (oci.layout.layer_position)


@dataclass(frozen=True)
class Framing:
    """What one target is sent: which blobs, which left out, and under which names."""

    blobs: frozenset[str] | None = None  # the model's blob members, when known up front; None: learn at the end
    omit: frozenset[str] = field(default_factory=frozenset)  # member names (or "#<layer position>") left out: thin
    position: Position | None = None  # for "#<position>" omissions of a stream
    platform: str | None = None
    named: bool = True  # write the image's names; False: the engine records it unnamed
    # one platform of a multi-platform image (transfer/platforms.py): metadata names its manifest, not the index
    single: bool = False
    target: str | None = None  # a stream's target platform: its image is chosen at the end, when the index is known


def reframe(chunks: Iterable[bytes | memoryview], framing: Framing) -> Iterator[bytes | memoryview]:
    """Write the archive ``chunks`` (a plain tar) describe, as :mod:`this module <.reframe>` says."""
    writer = _Writer(framing)
    for chunk in chunks:
        yield from writer.feed(chunk)
    yield from writer.end()


class _Writer:
    def __init__(self, framing: Framing) -> None:
        self.framing = framing
        self.scanner = ArchiveScanner()
        self.written: set[str] = set()
        self._dirs: set[str] = set()
        self._seen = 0
        self._current: Member | None = None
        self._mode = DROP
        self._held: list[bytes | memoryview] = []
        self._deferred: list[str] = []  # small JSON members of a stream: written at the end if the image names them

    def feed(self, chunk: bytes | memoryview) -> list[bytes | memoryview]:
        out: list[bytes | memoryview] = []
        if not chunk:
            return out
        begin = self.scanner.offset
        self.scanner.feed(chunk)
        end = self.scanner.offset
        view = memoryview(chunk).cast("B")
        members = self.scanner.index.members
        new = list(islice(members.values(), self._seen, None)) if len(members) > self._seen else []
        self._seen = len(members)
        for member in ([self._current] if self._current is not None else []) + new:
            if member is not self._current:
                self._mode = self._decide(member)
                if self._mode == STREAM:
                    out += self._headers(member)
            lo, hi = max(begin, member.offset), min(end, member.offset + member.size)
            if hi > lo and self._mode == HOLD and lo == member.offset and bytes(view[lo - begin : lo - begin + 1]) not in JSON_FIRST:
                out += self._headers(member)  # its first byte says it is no JSON: no metadata, so stream it
                self._mode = STREAM
            if hi > lo and self._mode != DROP:
                (out if self._mode == STREAM else self._held).append(view[lo - begin : hi - begin])
            if member.offset + member.size <= end:
                out += self._end_member(member)
                self._current = None
            else:
                self._current = member
        return out

    def _decide(self, member: Member) -> str:
        """Stream it, drop it, or (a small member of a stream, which may be JSON) hold it until it ends."""
        if not self._wanted(member.name):
            return DROP
        if self.framing.blobs is None and member.size <= JSON_MEMBER_LIMIT:
            return HOLD
        return STREAM

    def _end_member(self, member: Member) -> list[bytes | memoryview]:
        out: list[bytes | memoryview] = []
        if self._mode == HOLD:
            held, self._held = self._held, []
            if member.name in self.scanner.index.metadata:  # JSON: its exact bytes are kept, for the end
                self._deferred.append(member.name)
                return out
            out += [*self._headers(member), *held]
        if self._mode != DROP:
            out.append(padding(member.size))
        return out

    def _wanted(self, name: str) -> bool:
        framing = self.framing
        if name in framing.omit:
            return False
        if framing.blobs is not None:
            return name in framing.blobs
        if METADATA_NAME.fullmatch(name):
            return False
        if framing.position is not None and any(o.startswith("#") for o in framing.omit):
            position = framing.position(name, self.scanner.index)
            if position is not None and f"#{position}" in framing.omit:
                return False
        return True

    def _headers(self, member: Member) -> list[bytes]:
        out = []
        parts = member.name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            directory = "/".join(parts[:depth]) + "/"
            if directory not in self._dirs:
                self._dirs.add(directory)
                out.append(directory_header(directory))
        out.append(member_header(member.name, member.size))
        self.written.add(member.name)
        return out

    def end(self) -> list[bytes]:
        index = self.scanner.finish()
        platform, single = self.framing.platform, self.framing.single
        if platform is None and self.framing.target is not None:
            platform = chosen_platform(index, self.framing.target)
            single = platform is not None
        image = index.image(platform)
        named = named_blobs(index, image)
        stray = sorted(self.written - named)
        if stray:
            raise ArchiveError(
                f"the archive holds {stray[0]!r}, which the image does not name; refused before the engine "
                "received any metadata"
            )
        if single:  # its manifest, config and layers only: the index and the other platforms' manifests stay out
            image = replace(image, index_digest=None)
            named = named_blobs(index, image)
        out: list[bytes] = []
        for name in self._deferred:
            if name in named:  # a config, manifest or index: the bytes the scan kept, which the model was read from
                out += [*self._headers(index.members[name]), index.metadata[name], padding(index.members[name].size)]
        return [*out, *_metadata(index, image, self.framing.named), END]


def chosen_platform(index: ArchiveIndex, target: str) -> str | None:
    """The platform of the image a ``target`` platform takes from a multi-platform archive (None: a single image,
    whatever its platform); ArchiveError, naming both, when the archive has none for it."""
    images = listed(index)
    if len(images) < 2:
        return None
    image = choose(images, parse_platform(target))
    if image is None or image.platform is None:
        raise ArchiveError(f"the archive has no image for platform {target} (it has {platforms_of(images)})")
    return str(image.platform)


def named_blobs(index: ArchiveIndex, image: Image) -> frozenset[str]:
    """Every blob member the image names: its config and layers, its manifest, the index above it and all it lists.

    An index is sent byte for byte, so the other platforms' manifests and
    attestations it lists, and what those list, are the image's too.
    Names are resolved through links to the regular member that holds the bytes.
    """

    def real(name: str) -> str:
        return index.links.get(name, name)

    names = {real(image.config_path or blob_path(image.config_digest))}
    names.update(real(layer.path or blob_path(layer.digest)) for layer in image.layers)
    todo = [(d, 0) for d in (image.index_digest, image.manifest_digest) if d]
    while todo:
        digest, depth = todo.pop()
        path = real(blob_path(digest))
        if path in names and depth:
            continue
        names.add(path)
        raw = index.metadata.get(path)
        if raw is None or depth >= MAX_DEPTH:
            continue
        todo += [(child, depth + 1) for child in _children(raw, path)]
    return frozenset(n for n in names if n in index.members)


def _children(raw: bytes, name: str) -> list[str]:
    """The digests an index or manifest blob lists: manifests, config, layers."""
    try:
        value = load_json(raw, name=name, shape=dict)
    except ArchiveError:
        return []  # a config or a layer that happens to be JSON lists nothing
    manifests, layers = value.get("manifests") or [], value.get("layers") or []
    if not isinstance(manifests, list) or not isinstance(layers, list):
        return []
    found: list[Any] = [*manifests, value.get("config"), *layers]
    return [d["digest"] for d in found if isinstance(d, dict) and isinstance(d.get("digest"), str) and is_digest(d["digest"])]


def _metadata(index: ArchiveIndex, image: Image, named: bool) -> list[bytes]:
    """``manifest.json`` always (a classic store reads only it); ``oci-layout`` and ``index.json`` for an OCI image."""
    tags = list(image.repo_tags) if named else []

    def real(name: str) -> str:
        return index.links.get(name, name)

    entry = {
        "Config": real(image.config_path or blob_path(image.config_digest)),
        "RepoTags": tags,
        "Layers": [real(layer.path or blob_path(layer.digest)) for layer in image.layers],
    }
    out = []
    top = image.index_digest or image.manifest_digest
    if top is not None:
        path = real(blob_path(top))
        descriptor = {"mediaType": _media_type(index, path, top == image.index_digest), "digest": top,
                      "size": index.members[path].size}
        entries = [{**descriptor, "annotations": _annotations(tag)} for tag in tags] or [descriptor]
        index_json = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        out += [_member("oci-layout", OCI_LAYOUT), _member("index.json", _canonical(index_json))]
    out.append(_member("manifest.json", _canonical([entry])))
    return out


def _media_type(index: ArchiveIndex, path: str, is_index: bool) -> str:
    """The blob's own ``mediaType`` where it states a known one, as containerd would take it; else OCI's."""
    raw = index.metadata.get(path)
    try:
        stated = load_json(raw, name=path, shape=dict).get("mediaType") if raw else None
    except ArchiveError:
        stated = None
    known = INDEXES if is_index else MANIFESTS
    return stated if stated in known else (OCI_INDEX if is_index else OCI_MANIFEST)


def _annotations(tag: str) -> dict[str, str]:
    """What containerd (and so the containerd store) reads a name from: the full name, and the OCI ref name (the tag)."""
    try:
        full = normalize(tag)
        ref = parse(full)
    except ArtiloadError:
        raise ArchiveError(f"the archive names its image {tag[:200]!r}, which is not a valid image reference") from None
    return {"io.containerd.image.name": full, "org.opencontainers.image.ref.name": ref.tag or "latest"}


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _member(name: str, data: bytes) -> bytes:
    return member_header(name, len(data)) + data + padding(len(data))


__all__ = ["Framing", "named_blobs", "reframe"]
