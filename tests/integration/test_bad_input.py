"""Bad input, table-driven: every case gets a precise error, and the engine and the disk are unchanged.

Archives are built from a real ``docker save`` of the base image (made once per
module) with ``tarfile`` and byte edits. Loads go to engine B with skip and
delta off, so every byte of the bad archive is offered to the engine; the
cases already in test_engine_transfer.py (empty, random bytes, three
truncation points, digest mismatch, invalid tag, missing image/socket,
refused port, TLS, SSH keys) are not repeated.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
from pathlib import Path

import docker
import pytest

import harness  # scripts/harness.py, put on sys.path by tests/conftest.py
from airflow_provider_artiload.artifacts import DockerArchive
from airflow_provider_artiload.oci.reference import InvalidReference
from airflow_provider_artiload.exceptions import (
    ArchiveError,
    ConnectError,
    DigestMismatch,
    EndpointError,
    EngineError,
    ImageNotFound,
    SSHAuthError,
    TLSError,
    TransferError,
)
from airflow_provider_artiload.hooks.engine import DockerEngineHook
from airflow_provider_artiload.operators import CopyImageOperator, DockerLoadOperator
from tests.integration.test_engine_transfer import BASE, connect, drop, snapshot

OTHER = "bad/other:1"


@pytest.fixture(scope="module")
def base(engine, tmp_path_factory) -> DockerArchive:
    os.environ["AIRFLOW_CONN_BAD_SRC"] = json.dumps({"conn_type": "docker_engine", "host": engine.unix_url})
    return DockerEngineHook("bad_src").save_image(BASE, str(tmp_path_factory.mktemp("bad") / "base.tar"))


@pytest.fixture(scope="module")
def other(engine, tmp_path_factory) -> DockerArchive:
    """busybox + a 1 MiB layer: a second image, to overwrite a tag with."""
    harness.build_image(engine.socket_path, OTHER, f"FROM {BASE}\nRUN head -c 1048576 /dev/urandom > /other.bin\n")
    return DockerEngineHook("bad_src").save_image(OTHER, str(tmp_path_factory.mktemp("bad") / "other.tar"))


def engine_temp(eng) -> list[str]:
    return eng.temp_entries()


def wait_engine_temp_empty(eng, timeout: float = 10.0) -> list[str]:
    import time

    deadline = time.monotonic() + timeout
    while (left := engine_temp(eng)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- archive builders: each takes the real archive's path and writes a bad one ---------------------------------


def members(path: str) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return {m.name: m for m in tar.getmembers()}


def manifest_of(path: str) -> list[dict]:
    with tarfile.open(path) as tar:
        return json.load(tar.extractfile("manifest.json"))


def rebuild(src: str, dst: Path, *, skip=(), replace: dict[str, bytes] | None = None,
            extra: list[tuple[tarfile.TarInfo, bytes]] = ()) -> Path:
    """Copy ``src`` member by member, leaving out ``skip``, swapping data of ``replace``, adding ``extra``."""
    replace = replace or {}
    with tarfile.open(src) as tin, tarfile.open(dst, "w", format=tarfile.USTAR_FORMAT) as tout:
        for info, data in extra:
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data) if data else None)
        for member in tin.getmembers():
            if member.name in skip:
                continue
            data = replace.get(member.name)
            if data is None and member.isfile():
                data = tin.extractfile(member).read()
            if data is not None:
                member.size = len(data)
            tout.addfile(member, io.BytesIO(data) if data is not None else None)
    return dst


def cut_at(src: str, dst: Path, offset: int) -> Path:
    dst.write_bytes(Path(src).read_bytes()[:offset])
    return dst


def layer_names(src: str) -> list[str]:
    return manifest_of(src)[0]["Layers"]


def with_manifest(src: str, dst: Path, change) -> Path:
    manifest = manifest_of(src)
    change(manifest[0])
    return rebuild(src, dst, replace={"manifest.json": json.dumps(manifest).encode()})


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    return info


def a_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def header_offset(src: str, name: str) -> int:
    return members(src)[name].offset


def data_offset(src: str, name: str) -> int:
    return members(src)[name].offset_data


def end_of_members(src: str) -> int:
    """Where the end-of-archive blocks start (the last member is manifest.json on 20.10, not on 25+)."""
    return max(m.offset_data + -(-m.size // 512) * 512 for m in members(src).values())


ARCHIVES = [
    # (case id, builder(src, dst) -> path, error class, message pattern after "<path>: ")
    ("cut inside the first header", lambda s, d: cut_at(s, d, 300), ArchiveError, r"the archive is truncated at byte 300$"),
    ("cut inside a later header",
     lambda s, d: cut_at(s, d, header_offset(s, layer_names(s)[-1]) + 100), ArchiveError, r"the archive is truncated at byte \d+$"),
    ("cut at a member boundary, before the manifest",
     lambda s, d: cut_at(s, d, header_offset(s, "manifest.json")), ArchiveError, r"not an image archive: it has (neither manifest.json nor index.json|no manifest.json, and index.json without oci-layout)"),
    ("cut inside the manifest",
     lambda s, d: cut_at(s, d, data_offset(s, "manifest.json") + 40), ArchiveError, r"truncated at byte \d+ inside 'manifest.json'"),
    ("cut inside the end-of-archive blocks",
     lambda s, d: cut_at(s, d, end_of_members(s) + 200), ArchiveError, r"truncated at byte \d+$"),
    ("no manifest", lambda s, d: rebuild(s, d, skip={"manifest.json", "index.json"}), ArchiveError, r"not an image archive: it has (neither manifest.json nor index.json|no manifest.json, and index.json without oci-layout)"),
    ("manifest is not JSON", lambda s, d: rebuild(s, d, replace={"manifest.json": b"[{not json"}),
     ArchiveError, r"manifest.json is not valid JSON"),
    ("manifest lists no image", lambda s, d: rebuild(s, d, replace={"manifest.json": b"[]"}), ArchiveError, r"manifest.json lists no images"),
    ("manifest names an absent layer",
     lambda s, d: with_manifest(s, d, lambda m: m["Layers"].append("0" * 64 + "/layer.tar")),
     ArchiveError, r"manifest.json names \d+ layers, config \S+ lists \d+"),
    ("manifest names an absent config",
     lambda s, d: with_manifest(s, d, lambda m: m.update(Config="f" * 64 + ".json")),
     ArchiveError, r"manifest.json names config 'f{64}.json', which the archive does not contain"),
    ("member name with ..", lambda s, d: rebuild(s, d, extra=[(entry("../escape"), b"x")]),
     ArchiveError, r"unsafe member name '../escape'"),
    ("member name with .. inside", lambda s, d: rebuild(s, d, extra=[(entry("a/../../escape"), b"x")]),
     ArchiveError, r"unsafe member name 'a/../../escape'"),
    ("absolute member name", lambda s, d: rebuild(s, d, extra=[(entry("/etc/escape"), b"x")]),
     ArchiveError, r"unsafe member name '/etc/escape'"),
    ("symlink to an absolute path", lambda s, d: rebuild(s, d, extra=[(entry("passwd", tarfile.SYMTYPE, "/etc/passwd"), b"")]),
     ArchiveError, r"unsafe link 'passwd' -> '/etc/passwd'"),
    ("symlink climbing out", lambda s, d: rebuild(s, d, extra=[(entry("d/up", tarfile.SYMTYPE, "../../../etc"), b"")]),
     ArchiveError, r"unsafe link 'd/up' -> '../../../etc'"),
    ("hard link climbing out", lambda s, d: rebuild(s, d, extra=[(entry("hard", tarfile.LNKTYPE, "../outside"), b"")]),
     ArchiveError, r"unsafe link 'hard' -> '../outside'"),
    ("a layer that is another valid tar",
     lambda s, d: rebuild(s, d, replace={layer_names(s)[-1]: a_tar({"bin/evil": b"#!/bin/sh\necho pwned\n"})}),
     (DigestMismatch, EngineError),  # checked by us, or by the engine as it registers the layer (it names the layer)
     r"layer \S+ has sha256 sha256:[0-9a-f]{64}, but the image (config says its diff ID|says its blob) is sha256:"
     r"|load failed: invalid diffID for layer \d+: expected \"sha256:[0-9a-f]{64}\", got \"sha256:[0-9a-f]{64}\""),
]


@pytest.mark.parametrize(("case", "build", "error", "pattern"), ARCHIVES, ids=[a[0] for a in ARCHIVES])
def test_bad_archive_is_refused_and_changes_nothing(monkeypatch, engine_b, base, tmp_path, case, build, error, pattern):
    bad = build(base.path, tmp_path / "bad.tar")
    drop(engine_b, base.image_id)
    before, bad_sha = snapshot(engine_b), sha(bad)
    hook = connect(monkeypatch, "bad_dst", engine_b.unix_url)
    with pytest.raises(error) as failure:
        hook.load_archive(str(bad), tags=["must/not:exist"], skip_existing=False, delta=False)
    message = str(failure.value)
    assert message.startswith((f"{bad}: ", f"{engine_b.unix_url}: ")), message  # names the file (or the engine that refused it)...
    assert re.search(pattern, message), message  # ...and exactly what is wrong with it
    assert snapshot(engine_b) == before
    assert wait_engine_temp_empty(engine_b) == []
    assert sha(bad) == bad_sha and os.listdir(tmp_path) == ["bad.tar"]


def test_gzip_compressed_archive_is_accepted(monkeypatch, engine_b, base, tmp_path):
    """The issue says: a gzip-compressed archive (``docker save | gzip``) is accepted, as ``docker load`` does."""
    packed = tmp_path / "base.tar.gz"
    packed.write_bytes(gzip.compress(Path(base.path).read_bytes(), compresslevel=1))
    drop(engine_b, base.image_id)
    hook = connect(monkeypatch, "gz_dst", engine_b.unix_url)
    outcome = hook.load_archive(str(packed), tags=["gz/loaded:1"], skip_existing=False, delta=False)
    assert outcome.image_id == base.image_id
    assert docker.DockerClient(base_url=engine_b.unix_url).images.get("gz/loaded:1").id == base.image_id


def _vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def test_huge_manifest_is_refused_with_bounded_memory(monkeypatch, engine_b, base, tmp_path):
    """A 96 MiB manifest.json: refused at its header, never held in memory."""
    huge = tmp_path / "manifest.json"
    manifest = manifest_of(base.path)
    with open(huge, "w") as out:  # written in pieces: the test itself must not hold it either
        out.write(json.dumps(manifest)[:-2] + ', "Pad": "')
        for _ in range(96):
            out.write("x" * (1 << 20))
        out.write('"}]')
    bad = tmp_path / "huge.tar"
    with tarfile.open(base.path) as tin, tarfile.open(bad, "w") as tout:
        for member in tin.getmembers():
            if member.name != "manifest.json":
                tout.addfile(member, tin.extractfile(member) if member.isfile() else None)
        tout.add(huge, arcname="manifest.json")
    huge.unlink()
    drop(engine_b, base.image_id)
    before = snapshot(engine_b)
    hook = connect(monkeypatch, "huge_dst", engine_b.unix_url)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    start = _vm_kib("VmRSS")
    with pytest.raises(ArchiveError, match=rf"^{bad}: manifest.json is \d+ bytes; an image archive's JSON files are small"):
        hook.load_archive(str(bad), tags=["must/not:exist"], skip_existing=False, delta=False)
    grown = (_vm_kib("VmHWM") - start) >> 10
    print(f"peak RSS growth loading a 96 MiB manifest: {grown} MiB")
    assert grown < 32
    assert snapshot(engine_b) == before
    assert wait_engine_temp_empty(engine_b) == []


def test_docker_save_of_an_image_with_repeated_layers_is_accepted(monkeypatch, engine, engine_b, tmp_path):
    """``docker save`` writes a repeated layer once and the later copy as a symlink ``../<id>/layer.tar``
    (moby image/tarexport/save.go): a link that stays INSIDE the archive must not count as unsafe."""
    image_id = harness.build_image(engine.socket_path, "bad/repeated:1", f"FROM {BASE}\nCOPY f /f\nCOPY f /f\n", {"f": b"same\n"})
    reference = tmp_path / "reference.tar"
    reference.write_bytes(b"".join(docker.DockerClient(base_url=engine.unix_url).images.get(image_id).save(named="bad/repeated:1")))
    listed = members(str(reference))
    if "index.json" in listed:  # Docker 25+: a repeated blob is written once (and listed twice), never linked
        layers = json.load(tarfile.open(reference).extractfile("manifest.json"))[0]["Layers"]
        assert set(layers) <= set(listed) and not [m for m in listed.values() if m.issym()]
    else:  # 20.10: the later copy is a symlink ../<id>/layer.tar
        links = [m for m in listed.values() if m.issym()]
        assert links and links[0].linkname.startswith("../"), "the engine no longer writes the repeated layer as a link"
    drop(engine_b, image_id)
    loaded = connect(monkeypatch, "rep_dst", engine_b.unix_url).load_archive(
        str(reference), tags=["bad/repeated:1"], skip_existing=False, delta=False
    )
    assert loaded.image_id == image_id
    saved = connect(monkeypatch, "rep_src", engine.unix_url).save_image("bad/repeated:1", str(tmp_path / "saved.tar"))
    assert _contents(Path(saved.path)) == _contents(reference)  # the link's own mtime is the save time: compare members


def _contents(path: Path) -> dict[str, tuple]:
    with tarfile.open(path) as tar:
        return {m.name: (m.type, m.linkname, hashlib.sha256(tar.extractfile(m).read()).hexdigest() if m.isfile() else None)
                for m in tar.getmembers()}


# --- endpoints -------------------------------------------------------------------------------------------------

ENDPOINTS = [
    # (case id, host field (ENGINE_SOCK/SSHD/TLS_PORT/SSHD_PORT filled in), extras, error class, message pattern)
    ("no host", "tcp://", {}, EndpointError, r"connection 'bad_ep': invalid engine endpoint 'tcp://': missing host"),
    ("port not a number", "tcp://127.0.0.1:docker", {}, EndpointError, r"'tcp://127.0.0.1:docker': the port must be a number"),
    ("port out of range", "tcp://127.0.0.1:70000", {}, EndpointError, r"'tcp://127.0.0.1:70000': the port must be a number from 1 to 65535"),
    ("port zero", "tcp://127.0.0.1:0", {}, EndpointError, r"the port must be a number from 1 to 65535"),
    ("tcp with a path", "tcp://127.0.0.1:2375/v1.41", {}, EndpointError, r"a tcp endpoint is only host and port"),
    ("relative unix path", "unix://docker.sock", {}, EndpointError, r"'unix://docker.sock': a unix socket path must be absolute"),
    ("unknown scheme http", "http://127.0.0.1:2375", {}, EndpointError, r"'http://127.0.0.1:2375': unknown scheme 'http'"),
    ("unknown scheme npipe", "npipe:////./pipe/docker_engine", {}, EndpointError, r"unknown scheme 'npipe'"),
    ("docker:// is BuildKit only", "docker://unix:///var/run/docker.sock", {}, EndpointError, r"docker:// names the BuildKit inside an engine"),
    ("ssh without host", "ssh://root@:22", {}, EndpointError, r"'ssh://root@:22': missing host"),
    ("ssh relative socket", "ssh://root@127.0.0.1:22", {"socket_path": "docker.sock"}, EndpointError, r"extra 'socket_path' must be absolute \(a socket path on the remote host\), got 'docker.sock'"),
    ("tls flag typo", "tcp://127.0.0.1:2376", {"tls": "yes please"}, EndpointError, r"extra 'tls' must be true or false, got 'yes please'"),
    ("tls off but certs given", "tcp://127.0.0.1:2376", {"tls": "false", "tls_ca_cert": "/ca.pem"}, EndpointError, r"'tls' is false but TLS extras are set: tls_ca_cert"),
    ("ssh bool typo", "ssh://root@127.0.0.1:22/s.sock", {"no_host_key_check": "ture"}, EndpointError, r"extra 'no_host_key_check' must be true or false, got 'ture'"),
    ("timeout not a number", "unix:///ENGINE_SOCK", {"transfer_timeout": "soon"}, EndpointError, r"extra 'transfer_timeout' must be a number of seconds, got 'soon'"),
    ("timeout negative", "unix:///ENGINE_SOCK", {"timeout": "-5"}, EndpointError, r"extra 'timeout' must be positive, got '-5'"),
    ("missing remote socket over ssh", "ssh://root@127.0.0.1:SSHD_PORT/tmp/no/such.sock", "SSH", ConnectError,
     r"^ssh://root@127.0.0.1:\d+/tmp/no/such.sock: the SSH server could not connect to /tmp/no/such.sock: the socket is missing"),
    ("wrong user over ssh", "ssh://nobody@127.0.0.1:SSHD_PORT/ENGINE_SOCK", "SSH", SSHAuthError,
     r"^ssh://nobody@127.0.0.1:\d+/\S+: the SSH server refused authentication as 'nobody'"),
    ("plain http to the TLS port", "tcp://127.0.0.1:TLS_PORT", {"tls": "false"}, EngineError,
     r"^tcp://127.0.0.1:\d+: .*\(400\): Client sent an HTTP request to an HTTPS server"),
    ("TLS to the sshd port", "tcp://127.0.0.1:SSHD_PORT", "TLS", TLSError, r"TLS handshake with tcp://127.0.0.1:\d+ failed"),
    ("ssh to the engine's TLS port", "ssh://root@127.0.0.1:TLS_PORT/ENGINE_SOCK", "SSH", ConnectError, r"^cannot reach ssh://root@127.0.0.1:\d+/\S+: "),
    ("plain http to the sshd port", "tcp://127.0.0.1:SSHD_PORT", {"tls": "false"}, TransferError, r"^tcp://127.0.0.1:\d+: GET /_ping failed: "),
]


@pytest.mark.parametrize(("case", "host", "extra", "error", "pattern"), ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
def test_bad_endpoint_fails_precisely(monkeypatch, engine, sshd, tls_material, case, host, extra, error, pattern):
    tls_port = engine.tcp_url.rsplit(":", 1)[1]
    host = host.replace("ENGINE_SOCK", engine.socket_path.lstrip("/")).replace("SSHD_PORT", str(sshd.port)).replace("TLS_PORT", tls_port)
    if extra == "SSH":
        extra = {"key_file": sshd.client_key, "host_key": sshd.host_key_line, "look_for_keys": "false", "conn_timeout": "5"}
    elif extra == "TLS":
        extra = {"tls_ca_cert": tls_material.ca_cert, "tls_client_cert": tls_material.client_cert, "tls_client_key": tls_material.client_key}
    before = snapshot(engine)
    hook = connect(monkeypatch, "bad_ep", host, **extra)
    with pytest.raises(error) as failure:
        hook.client.ping()
    assert re.search(pattern, str(failure.value)), str(failure.value)
    assert snapshot(engine) == before


# --- images and tags --------------------------------------------------------------------------------------------

BAD_TAGS = [
    "library/Upper:1",  # the repository path must be lowercase (a first component "Upper/" would be a registry host)
    "app:-leading-dash",
    "app:.leading-dot",
    "app:" + "x" * 129,  # tags are at most 128 characters
    "app@sha256:" + "a" * 64,  # a digest cannot be a tag
    "a//b:1",
    "app:tag:extra",
    "app:tag with space",
    ":notag",
    "   ",
]


@pytest.mark.parametrize("tag", BAD_TAGS)
def test_invalid_tag_is_refused_before_any_byte_moves(monkeypatch, engine_b, base, tag):
    drop(engine_b, base.image_id)
    before = snapshot(engine_b)
    op = DockerLoadOperator(task_id="load", source=base.to_xcom(), tag=["ok/first:1", tag], engine_conn_id=connect_id(monkeypatch, engine_b))
    with pytest.raises(InvalidReference, match="invalid (image name|tag|image reference)|cannot tag with a digest"):
        op.execute({})
    assert op.hooks[0].client.dialer.counter.sent == 0
    assert snapshot(engine_b) == before


def connect_id(monkeypatch, eng, conn_id: str = "tags_dst") -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "docker_engine", "host": eng.unix_url}))
    return conn_id


def test_missing_images_and_sources_are_named(monkeypatch, engine, engine_b, tmp_path):
    src, dst = connect_id(monkeypatch, engine, "miss_src"), connect_id(monkeypatch, engine_b, "miss_dst")
    before = snapshot(engine_b)
    with pytest.raises(ImageNotFound, match=rf"^{engine.unix_url}: inspect image 'no/such:image' failed \(404\)"):
        CopyImageOperator(task_id="copy", image="no/such:image", source_engine_conn_id=src, engine_conn_id=dst).execute({})
    with pytest.raises(ImageNotFound, match=rf"inspect image 'sha256:{'0' * 64}' failed \(404\)"):
        CopyImageOperator(task_id="copy", image={"kind": "image", "image": "x", "image_id": "sha256:" + "0" * 64, "engine": "e"},
                          source_engine_conn_id=src, engine_conn_id=dst).execute({})
    gone = {"kind": "docker-archive", "path": str(tmp_path / "gone.tar"), "sha256": "sha256:" + "1" * 64, "size": 1,
            "image_id": "sha256:" + "2" * 64}
    with pytest.raises(ArchiveError, match=rf"archive {tmp_path}/gone.tar does not exist"):
        DockerLoadOperator(task_id="load", source=gone, engine_conn_id=dst).execute({})
    with pytest.raises(ArchiveError, match=r"expected an artifact of kind 'docker-archive', got 'image'"):
        DockerLoadOperator(task_id="load", source={"kind": "image", "image": "x"}, engine_conn_id=dst).execute({})
    assert snapshot(engine_b) == before
    assert os.listdir(tmp_path) == []


def _retag_and_corrupt(src: str, dst: Path, tag: str) -> Path:
    """The other image, claiming ``tag`` in its own manifest (the engine applies RepoTags itself), top layer corrupt."""
    manifest = manifest_of(src)
    manifest[0]["RepoTags"] = [tag]
    top = manifest[0]["Layers"][-1]
    with tarfile.open(src) as tar:
        layer = bytearray(tar.extractfile(top).read())
    layer[len(layer) // 2] ^= 0xFF
    return rebuild(src, dst, replace={"manifest.json": json.dumps(manifest).encode(), top: bytes(layer)})


@pytest.mark.parametrize("how", ["corrupt layer", "truncated"])
def test_failed_load_does_not_move_an_existing_tag(monkeypatch, engine_b, base, other, tmp_path, capsys, how):
    keep = "keep/me:1"
    dst = connect_id(monkeypatch, engine_b, "keep_dst")
    drop(engine_b, other.image_id)
    DockerLoadOperator(task_id="first", source=base.to_xcom(), tag=keep, engine_conn_id=dst).execute({})
    before = snapshot(engine_b)
    if how == "corrupt layer":
        bad, error, where = _retag_and_corrupt(other.path, tmp_path / "bad.tar", keep), (DigestMismatch, EngineError), r"invalid diffID|diff ID|its blob is"
    else:
        bad = cut_at(other.path, tmp_path / "bad.tar", other.size - 4096)
        error, where = ArchiveError, rf"^{bad}: "
    capsys.readouterr()
    with pytest.raises(error, match=where):
        DockerLoadOperator(task_id="load", source=str(bad), tag=keep, engine_conn_id=dst).execute({})
    logged = capsys.readouterr().out
    assert docker.DockerClient(base_url=engine_b.unix_url).images.get(keep).id == base.image_id
    assert snapshot(engine_b) == before
    assert wait_engine_temp_empty(engine_b) == []
    assert "loading again in full" not in logged, "a corrupt archive was sent a second time"
