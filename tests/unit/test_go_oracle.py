"""A differential test of artiload's readers against Go's own (the engines' archive/tar and encoding/json).

``go/tarlist.go -batch`` reads each archive as docker load and containerd's
importer do and decodes its metadata members into structs shaped like moby's
manifest.json items and the OCI index, manifest, config and layout. For every
input, artiload either refuses it with an ArchiveError, or agrees with Go on
every regular member's name and size, every link's target, and what the
metadata says: the image's config, layers, diff IDs, platform and names.

The inputs are real-shaped archives and a few thousand seeded mutations of
them: header bytes, numeric fields, type flags, magics, PAX and GNU extended
headers, JSON key case, whitespace and duplicates, extra entries. Zero
disagreements where artiload accepts; zero crashes that are not ArchiveError.
"""

from __future__ import annotations

import io
import json
import posixpath
import random
import re
import tarfile
from typing import Any

from airflow_provider_artiload.exceptions import ArchiveError
from airflow_provider_artiload.oci.archive import ArchiveScanner
from airflow_provider_artiload.oci.image import OCI_LAYER, Image, blob_path, digest_of
from tests.unit.archives import chunked, docker_archive, layer_tar, oci_archive
from tests.unit.golister import go_lister, read_many  # noqa: F401  (a fixture)
from tests.unit.test_tar_go import header, member, pax, rec

BLOCK = 512
MUTATIONS = 3000
SEED = 16  # the issue's number: the same inputs every run


# ---------------------------------------------------------------- the two readers


def artiload_view(data: bytes) -> tuple[Any, str | None]:
    """(index, image, raw links) as artiload reads ``data``, or (None, why it refused)."""
    scanner = ArchiveScanner()
    try:
        for piece in chunked(data, [4096, 1, 511, 65536]):
            scanner.feed(piece)
        index = scanner.finish()
        image = index.image()
        index.check_complete()
    except ArchiveError as exc:
        return None, str(exc)
    return (index, image, dict(scanner._raw_links)), None


def disagreements(go: list[dict], view: tuple[Any, Image, dict]) -> list[str]:
    """What Go reads differently from what artiload accepted (empty: they agree)."""
    index, image, raw_links = view
    ends = [line for line in go if "end" in line or "error" in line]
    if not ends or "error" in ends[0]:
        return [f"Go fails where artiload accepts: {ends[:1]}"]
    found: list[str] = []
    files: dict[str, int] = {}
    links: dict[str, tuple[str, str]] = {}
    for line in go:
        if "name" not in line:
            continue
        name, kind = posixpath.normpath(line["name"]), line["type"]
        if kind in ("0", "\0") and not line["name"].endswith("/"):
            files[name] = line["size"]
        elif kind in ("1", "2"):
            links[name] = (kind, line["linkname"])
    ours = {_as_go(name): m.size for name, m in index.members.items()}
    if files != ours:
        found.append(f"regular members: only Go {sorted(set(files.items()) - set(ours.items()))}, "
                     f"only artiload {sorted(set(ours.items()) - set(files.items()))}")
    our_links = {_as_go(name): ("2" if symbolic else "1", _as_go(target)) for name, (target, symbolic) in raw_links.items()}
    if links != our_links:
        found.append(f"links: Go {links}, artiload {our_links}")
    decoded = next((line["json"] for line in go if "json" in line), {})
    found += _metadata(decoded, index, image)
    return found


def _as_go(name: str) -> str:
    """A name as Go's JSON encoder prints it: bytes that are not UTF-8 become U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _value(decoded: dict, name: str, kind: str) -> Any:
    result = decoded.get(name, {}).get(kind)
    if result is None:
        raise LookupError(f"Go kept no {name} to read as {kind}")
    if "error" in result:
        raise LookupError(f"Go cannot read {name} as {kind}: {result['error']}")
    return result["value"]


def _metadata(decoded: dict, index: Any, image: Image) -> list[str]:
    found: list[str] = []
    try:
        if "manifest.json" in index.metadata:
            items = [item or {} for item in _value(decoded, "manifest.json", "items") or []]
            if not items or any((i.get("Config"), i.get("Layers")) != (items[0].get("Config"), items[0].get("Layers")) for i in items):
                return [f"Go reads {len(items)} different images in manifest.json, artiload one"]
            item = items[0]
            tags = list(dict.fromkeys(t for i in items for t in i.get("RepoTags") or []))  # docker load applies every one
            if tags != list(image.repo_tags):
                found.append(f"tags: Go {tags}, artiload {image.repo_tags}")
            if (item.get("Layers") or []) != [layer.path for layer in image.layers]:
                found.append(f"layers: Go {item.get('Layers')}, artiload {[l.path for l in image.layers]}")
            config_name = posixpath.normpath(item.get("Config") or "")
            raw = index.metadata.get(config_name)
            if raw is None or digest_of(raw) != image.config_digest:
                found.append(f"config: Go reads {item.get('Config')!r}, artiload's config is {image.config_digest}")
            if image.format == "docker-archive":
                found += _config(_value(decoded, config_name, "config"), image)
                for layer in image.layers:
                    source = (item.get("LayerSources") or {}).get(layer.diff_id)
                    if source and source.get("mediaType") and source["mediaType"] != layer.media_type:
                        found.append(f"layer source media type: Go {source['mediaType']}, artiload {layer.media_type}")
        if image.format in ("oci-layout", "oci-archive"):
            layout = _value(decoded, "oci-layout", "layout")
            if layout.get("imageLayoutVersion") != "1.0.0":
                found.append(f"oci-layout: Go reads {layout}")
            top = _value(decoded, "index.json", "index")
            descriptors = top.get("manifests") or []
            if image.index_digest:
                if image.index_digest not in [d.get("digest") for d in descriptors]:
                    found.append(f"index.json: Go lists no {image.index_digest}")
                descriptors = _value(decoded, blob_path(image.index_digest), "index").get("manifests") or []
            if image.manifest_digest not in [d.get("digest") for d in descriptors]:
                found.append(f"index: Go lists no {image.manifest_digest}: {[d.get('digest') for d in descriptors]}")
            if image.format == "oci-layout":
                names = sorted({(d.get("annotations") or {}).get("io.containerd.image.name") for d in top.get("manifests") or []} - {None, ""})
                if names != sorted(image.repo_tags):
                    found.append(f"names: Go {names}, artiload {image.repo_tags}")
            manifest = _value(decoded, blob_path(image.manifest_digest or ""), "manifest")
            if (manifest.get("config") or {}).get("digest") != image.config_digest:
                found.append(f"manifest config: Go {manifest.get('config')}, artiload {image.config_digest}")
            go_layers = [(d.get("digest"), d.get("mediaType") or OCI_LAYER, d.get("size")) for d in manifest.get("layers") or []]
            our_layers = [(layer.digest, layer.media_type, layer.size) for layer in image.layers]
            if go_layers != our_layers:
                found.append(f"manifest layers: Go {go_layers}, artiload {our_layers}")
            found += _config(_value(decoded, blob_path(image.config_digest), "config"), image)
    except LookupError as exc:
        found.append(str(exc))
    return found


def _config(config: dict, image: Image) -> list[str]:
    found = []
    if (config.get("rootfs") or {}).get("diff_ids") != image.diff_ids:
        found.append(f"diff IDs: Go {(config.get('rootfs') or {}).get('diff_ids')}, artiload {image.diff_ids}")
    platform = "/".join(p for p in (config.get("os"), config.get("architecture"), config.get("variant")) if p)
    if platform != image.platform:
        found.append(f"platform: Go {platform!r}, artiload {image.platform!r}")
    return found


def compare(binary, archives: list[bytes]) -> tuple[int, list[str], list[str]]:
    """(how many artiload accepted, disagreements, crashes) over ``archives``."""
    accepted, disagreeing, crashes = 0, [], []
    views = []
    for number, data in enumerate(archives):
        try:
            views.append(artiload_view(data))
        except Exception as exc:  # not an ArchiveError: a reader bug
            views.append((None, None))
            crashes.append(f"#{number}: {type(exc).__name__}: {exc}")
    for number, (go, (view, _)) in enumerate(zip(read_many(binary, archives), views)):
        if view is None:
            continue
        accepted += 1
        for problem in disagreements(go, view):
            disagreeing.append(f"#{number}: {problem}")
    return accepted, disagreeing, crashes


# ---------------------------------------------------------------- inputs


def seeds() -> list[bytes]:
    """Archives of every shape artiload reads: legacy, OCI (plain, gzip, zstd, nested index), PAX, GNU, links."""
    legacy, _ = docker_archive(tags=["app:1", "app:latest"])
    pax_legacy, _ = docker_archive(layers=[layer_tar({"a": b"1"}), layer_tar({"b": b"2"})], tags=["p:1"],
                                   extra={"d" * 120 + "/note.txt": b"hi"}, fmt=tarfile.PAX_FORMAT)
    gnu_legacy, _ = docker_archive(tags=["g:1"], extra={"e" * 130 + "/x": b"x"}, fmt=tarfile.GNU_FORMAT)
    oci, _ = oci_archive(tags=["docker.io/library/o:1"])
    oci_zstd, _ = oci_archive(compress="zstd", legacy_manifest=True, tags=["docker.io/library/z:1"])
    oci_plain, _ = oci_archive(compress=None, legacy_manifest=True, tags=["docker.io/library/n:1"])
    nested, _ = oci_archive(platforms=["linux/amd64", "linux/arm64"], tags=["docker.io/library/m:1"])
    linked = _with_links(legacy)
    return [legacy, pax_legacy, gnu_legacy, oci, oci_zstd, oci_plain, nested, linked]


def _members(archive: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return [(info, tar.extractfile(info).read() if info.isfile() else b"") for info in tar.getmembers()]


def _rebuild(members: list[tuple[tarfile.TarInfo, bytes]], fmt: int = tarfile.USTAR_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        for info, data in members:
            if info.isfile():
                info = tarfile.TarInfo(info.name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.size = 0
                tar.addfile(info)
    return buffer.getvalue()


def _with_links(archive: bytes) -> bytes:
    members = _members(archive)
    extra = []
    for name, kind, target in (("d", tarfile.DIRTYPE, ""), ("d/up", tarfile.SYMTYPE, "."), ("d/self", tarfile.SYMTYPE, "up/x"),
                               ("hard", tarfile.LNKTYPE, "manifest.json")):
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, target
        extra.append((info, b""))
    return _rebuild(members + extra)


def _header_offsets(archive: bytes) -> list[int]:
    """Where headers start (every block, once an earlier mutation left Python's tarfile unable to read it)."""
    offsets = []
    try:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            for info in tar.getmembers():
                offsets.extend(range(info.offset, info.offset_data, BLOCK))
    except Exception:  # noqa: BLE001  (Python's tarfile fails in many ways on a mutated archive)
        offsets = list(range(0, max(len(archive) - BLOCK, 1), BLOCK))
    return offsets or [0]


def _fix_checksum(block: bytearray) -> None:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)


NUMBER_FIELDS = [(100, 108), (108, 116), (116, 124), (124, 136), (136, 148), (329, 337), (337, 345), (345, 357), (357, 369)]
NUMBER_VALUES = [b"", b"0", b"7", b"8", b"-1", b"+1", b" 1 2", b"0o7", b"1_0", b"\x80", b"\xff", b"\x80\x00\x00\x01",
                 b"\xc0", b"777777777777", b"12\x0034", b"\x00\x001", b"1e3", b"x"]
KINDS = b"0\x00125LKxgSDV7"
NAMES = ["manifest.json", "./manifest.json", "index.json", "oci-layout", "repositories", "x/", "a//b", "../x",
         "blobs/sha256/" + "a" * 64, "d/up/../manifest.json", "n" * 99, "."]
RECORD_KEYS = ["path", "linkpath", "size", "mtime", "uid", "gid", "atime", "comment", "SCHILY.xattr.a", "GNU.sparse.map", "uname"]
RECORD_VALUES = ["manifest.json", "index.json", "", "0", "12", "-1", "1.5", "x", "9" * 20, "a\0b", "../../etc", "blobs/sha256/" + "b" * 64]


def mutate(archive: bytes, rng: random.Random) -> bytes:
    """One mutation of ``archive``, chosen by ``rng``."""
    data = bytearray(archive)
    offsets = _header_offsets(archive)
    choice = rng.randrange(9)
    at = rng.choice(offsets)
    block = bytearray(data[at : at + BLOCK])
    if choice == 0:  # any header byte
        block[rng.randrange(BLOCK)] = rng.randrange(256)
        if rng.random() < 0.8:
            _fix_checksum(block)
    elif choice == 1:  # a numeric field
        start, end = rng.choice(NUMBER_FIELDS)
        value = rng.choice(NUMBER_VALUES)
        block[start:end] = (value + bytes(end - start))[: end - start] if rng.random() < 0.5 else value.rjust(end - start, b" ")[: end - start]
        _fix_checksum(block)
    elif choice == 2:  # the type flag
        block[156] = rng.choice(KINDS)
        _fix_checksum(block)
    elif choice == 3:  # the magic and version
        block[257:265] = rng.choice([b"ustar\x0000", b"ustar  \x00", bytes(8), b"ustar\x00  ", b"ustar \x00\x00"])
        if rng.random() < 0.3:
            block[345:357] = rng.choice([b"dir\0", b"12atime\0", b"0000000017\0\0"]).ljust(12, b"\0")
        _fix_checksum(block)
    elif choice == 4:  # an extended header before an entry
        records = b"".join(rec(rng.choice(RECORD_KEYS), rng.choice(RECORD_VALUES)) for _ in range(rng.randint(1, 3)))
        kind = rng.choice([b"x", b"x", b"g", b"L", b"K"])
        body = records if kind in b"xg" else rng.choice(RECORD_VALUES).encode() + b"\0"
        extended = pax(body, kind=kind)
        if rng.random() < 0.3:
            extended += pax(rec("comment", "g"), kind=b"g")
        return bytes(data[:at] + extended + data[at:])
    elif choice == 5:  # an extra entry
        name = rng.choice(NAMES)
        kind = rng.choice(b"0125")
        body = rng.choice([b"[]", b"{}", b" []", b"x", b""]) if kind == ord("0") else b""
        extra = member(name, body, kind=bytes([kind]), linkname=rng.choice(["manifest.json", "..", "d/up", ""]) if kind in b"12" else "")
        return bytes(data[:at] + extra + data[at:])
    elif choice == 6:  # the end: truncated, garbage, a lone zero block
        end = len(archive) - rng.choice([1, 512, 1024, 1536])
        tail = rng.choice([b"", bytes(BLOCK), b"x", bytes(BLOCK) + header("manifest.json", size=0)])
        return bytes(data[:end] + tail)
    else:  # JSON: key case, whitespace, duplicates, extra entries
        try:
            return _mutate_json(archive, rng)
        except Exception:  # noqa: BLE001  (Python's tarfile cannot rewrite this mutated archive)
            return archive
    data[at : at + BLOCK] = block
    return bytes(data)


def _mutate_json(archive: bytes, rng: random.Random) -> bytes:
    try:
        members = _members(archive)
    except Exception:  # noqa: BLE001  (Python's tarfile fails in many ways on a mutated archive)
        return archive
    candidates = [i for i, (info, body) in enumerate(members) if info.isfile() and body[:1] in (b"{", b"[")
                  and (not info.name.startswith("blobs/") or rng.random() < 0.3)]
    if not candidates:
        return archive
    i = rng.choice(candidates)
    info, body = members[i]
    try:
        value = json.loads(body)
    except ValueError:
        return archive
    how = rng.randrange(6)
    if how == 0:
        text = _recase(json.dumps(value), rng)
    elif how == 1:
        text = rng.choice([" ", "\n", "\t ", "\r\n"]) + json.dumps(value) + rng.choice(["", " ", "\n"])
    elif how == 2:
        text = _duplicate_key(value, rng)
    elif how == 3 and isinstance(value, list) and value:
        text = json.dumps(value + [{**value[0], "RepoTags": ["evil:1"]}])
    elif how == 4:
        text = json.dumps(value).replace("0", rng.choice(["NaN", "0.0", "1e400", "-0"]), 1)
    else:
        text = json.dumps(_drop_or_null(value, rng))
    raw = text.encode() if rng.random() < 0.95 else b"\xef\xbb\xbf" + text.encode()
    members[i] = (info, raw)
    return _rebuild(members, rng.choice([tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT, tarfile.GNU_FORMAT]))


def _recase(text: str, rng: random.Random) -> str:
    """Change the case of one key (Go still matches it to its field; a naive reader does not)."""
    keys = sorted(set(re.findall(r'"([A-Za-z_]+)":', text)))  # sorted: the same mutation whatever the hash seed
    if not keys:
        return text
    key = rng.choice(keys)
    new = rng.choice([key.upper(), key.lower(), key.swapcase(), key.replace("s", "\u017f")])
    return text.replace(f'"{key}":', f'"{new}":', 1 if rng.random() < 0.5 else -1)


def _duplicate_key(value: Any, rng: random.Random) -> str:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return "[" + _duplicate_key(value[0], rng) + "".join("," + json.dumps(v) for v in value[1:]) + "]"
    if not isinstance(value, dict) or not value:
        return json.dumps(value)
    key = rng.choice(list(value))
    other = rng.choice([key, key.swapcase(), key.upper(), key.lower()])
    extra = json.dumps({other: rng.choice([value[key], "evil", None, [], "sha256:" + "c" * 64])})[1:-1]
    body = json.dumps(value)[1:-1]
    return "{" + (body + ", " + extra if rng.random() < 0.5 else extra + ", " + body) + "}"


def _drop_or_null(value: Any, rng: random.Random) -> Any:
    target = value[0] if isinstance(value, list) and value and isinstance(value[0], dict) else value
    if isinstance(target, dict) and target:
        key = rng.choice(list(target))
        if rng.random() < 0.5:
            del target[key]
        else:
            target[key] = rng.choice([None, 5, "x", [], {}])
    return value


# ---------------------------------------------------------------- tests


def test_go_and_artiload_agree_on_every_seed_archive(go_lister):
    archives = seeds()
    accepted, disagreeing, crashes = compare(go_lister, archives)
    assert accepted == len(archives), [artiload_view(a)[1] for a in archives]
    assert not disagreeing and not crashes


def test_issue_16_corners_are_refused_or_read_as_go_reads_them(go_lister):
    legacy, _ = docker_archive(tags=["app:1"])
    first = _header_offsets(legacy)[0]
    corners = [
        pax(rec("path", "manifest.json")) + pax(rec("comment", "g"), kind=b"g") + legacy,  # g clears x
        member("././@LongLink", b"manifest.json\0", kind=b"L") + pax(b"", kind=b"g") + legacy,  # g clears L
        member("name", b"x", magic=b"ustar  \0", prefix=b"12atime") + legacy,  # GNU: bad atime, a USTAR prefix
        _recase_member(legacy, "manifest.json", "RepoTags", "repotags"),
        _recase_member(legacy, "manifest.json", "Config", "CONFIG"),
        legacy[:first] + legacy[first:],
    ]
    accepted, disagreeing, crashes = compare(go_lister, corners)
    assert not disagreeing and not crashes
    assert accepted >= 4


def _recase_member(archive: bytes, name: str, key: str, new: str) -> bytes:
    members = [(info, body.replace(f'"{key}"'.encode(), f'"{new}"'.encode()) if info.name == name else body)
               for info, body in _members(archive)]
    return _rebuild(members)


def test_fuzzed_archives_are_refused_or_read_as_go_reads_them(go_lister):
    rng = random.Random(SEED)
    bases = seeds()
    archives = []
    for _ in range(MUTATIONS):
        archive = rng.choice(bases)
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            archive = mutate(archive, rng)
        archives.append(archive)
    accepted, disagreeing, crashes = compare(go_lister, archives)
    print(f"fuzz: {len(archives)} inputs, {accepted} accepted by artiload, {len(disagreeing)} disagreements, {len(crashes)} crashes")
    assert not crashes, crashes[:10]
    assert not disagreeing, disagreeing[:10]
    assert accepted > MUTATIONS // 10  # the mutations are not all refused: the comparison has something to compare
