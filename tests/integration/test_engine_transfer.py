"""Save and load against real engines over unix, TCP+TLS and SSH, and the errors a user meets."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import docker
import pytest

from airflow_provider_artiload.artifacts import DockerArchive
from airflow_provider_artiload.oci.reference import InvalidReference
from airflow_provider_artiload.exceptions import (
    ArchiveError,
    ConnectError,
    DestinationError,
    DigestMismatch,
    HostKeyError,
    ImageNotFound,
    SSHAuthError,
    TLSError,
    TransferError,
)
from airflow_provider_artiload.hooks.engine import DockerEngineHook
from airflow_provider_artiload.operators import DockerLoadOperator, SaveImageOperator
from airflow_provider_artiload.oci.reframe import Framing, reframe

BASE = "artiload-test/busybox:latest"


def connect(monkeypatch, conn_id: str, host: str, **extra) -> DockerEngineHook:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "docker_engine", "host": host, "extra": extra}))
    return DockerEngineHook(conn_id)


def ssh_extra(sshd, **overrides) -> dict:
    return {"key_file": sshd.client_key, "known_hosts": sshd.known_hosts, "look_for_keys": "false", **overrides}


def snapshot(engine) -> set[tuple[str, tuple[str, ...]]]:
    """What a user would compare: every image ID with its tags."""
    client = docker.DockerClient(base_url=engine.unix_url)
    return {(image.id, tuple(sorted(image.tags))) for image in client.images.list(all=True)}


def run(engine, image: str, *command: str) -> bytes:
    client = docker.DockerClient(base_url=engine.unix_url)
    return client.containers.run(image, list(command), network_mode="none", remove=True)


def empty(engine) -> None:
    """Remove every image, so the next load must send every layer (tests run in any order)."""
    client = docker.DockerClient(base_url=engine.unix_url)
    for image in client.images.list(all=True):
        try:
            client.images.remove(image.id, force=True)
        except docker.errors.ImageNotFound:
            pass


def drop(engine, *refs: str) -> None:
    client = docker.DockerClient(base_url=engine.unix_url)
    for ref in refs:
        try:
            client.images.remove(ref, force=True)
        except docker.errors.ImageNotFound:
            pass


@pytest.fixture(scope="module")
def saved(engine, tmp_path_factory) -> DockerArchive:
    """The base image saved once over the unix socket."""
    os.environ["AIRFLOW_CONN_SRC_UNIX"] = json.dumps({"conn_type": "docker_engine", "host": engine.unix_url})
    path = tmp_path_factory.mktemp("saved") / "base.tar"
    return DockerEngineHook("src_unix").save_image(BASE, str(path))


def test_save_writes_a_complete_archive_and_a_true_artifact(engine, saved):
    data = Path(saved.path).read_bytes()
    inspect = docker.DockerClient(base_url=engine.unix_url).images.get(BASE).attrs
    assert saved.sha256 == "sha256:" + hashlib.sha256(data).hexdigest()
    assert saved.size == len(data)
    assert saved.image_id == inspect["Id"]
    assert saved.layers == inspect["RootFS"]["Layers"]
    assert saved.repo_tags == [BASE]
    assert oct(os.stat(saved.path).st_mode & 0o777) == "0o600"
    assert os.listdir(os.path.dirname(saved.path)) == ["base.tar"]


def reframed_size(path: str) -> int:
    """Every byte of a full load: the archive as artiload writes it for the engine (issue 16), blobs unchanged."""
    with open(path, "rb") as handle:
        return sum(len(piece) for piece in reframe(iter(lambda: handle.read(1 << 20), b""), Framing()))


def test_load_over_unix_tags_only_after_the_image_is_there(monkeypatch, engine_b, saved):
    empty(engine_b)
    hook = connect(monkeypatch, "dst_unix", engine_b.unix_url)
    outcome = hook.load_archive(saved, tags=["team/app:20260101", "team/app:latest"])
    assert outcome.mode == "full" and outcome.bytes_sent == reframed_size(saved.path)
    image = docker.DockerClient(base_url=engine_b.unix_url).images.get("team/app:20260101")
    assert image.id == saved.image_id
    assert {"team/app:20260101", "team/app:latest"} <= set(image.tags)
    assert run(engine_b, "team/app:20260101", "echo", "loaded over unix") == b"loaded over unix\n"


def test_second_load_sends_nothing_and_only_tags(monkeypatch, engine_b, saved):
    hook = connect(monkeypatch, "dst_unix2", engine_b.unix_url)
    hook.load_archive(saved, tags=[])
    before = hook.client.dialer.counter.sent
    outcome = hook.load_archive(saved, tags=["team/app:again"])
    assert outcome.mode == "skipped" and outcome.bytes_sent == 0
    assert hook.client.dialer.counter.sent - before < 4096  # only the inspect and tag requests
    assert docker.DockerClient(base_url=engine_b.unix_url).images.get("team/app:again").id == saved.image_id


def test_load_over_ssh_streamlocal(monkeypatch, engine_b, sshd, saved):
    empty(engine_b)
    host = f"ssh://{sshd.user}@{sshd.host}:{sshd.port}{engine_b.socket_path}"
    hook = connect(monkeypatch, "dst_ssh", host, **ssh_extra(sshd))
    outcome = hook.load_archive(saved, tags=["over/ssh:1"])
    assert outcome.engine == host and outcome.mode == "full"
    assert hook.client.dialer.counter.sent >= reframed_size(saved.path) == outcome.bytes_sent
    assert run(engine_b, "over/ssh:1", "echo", "via ssh") == b"via ssh\n"


def test_save_over_ssh_and_tls_give_loadable_archives(monkeypatch, engine, engine_b, sshd, tls_material, tmp_path):
    via_ssh = connect(
        monkeypatch, "src_ssh", f"ssh://{sshd.user}@{sshd.host}:{sshd.port}{engine.socket_path}", **ssh_extra(sshd)
    ).save_image(BASE, str(tmp_path / "ssh.tar"))
    via_tls = connect(
        monkeypatch,
        "src_tls",
        engine.tcp_url,
        tls_ca_cert=tls_material.ca_cert,
        tls_client_cert=tls_material.client_cert,
        tls_client_key=Path(tls_material.client_key).read_text(),  # inline PEM works too
    ).save_image(BASE, str(tmp_path / "tls.tar"))
    for archive, tag in ((via_ssh, "from/ssh:1"), (via_tls, "from/tls:1")):
        drop(engine_b, archive.image_id)
        connect(monkeypatch, "dst", engine_b.unix_url).load_archive(archive, tags=[tag])
        assert run(engine_b, tag, "true") == b""


def test_operators_pass_the_artifact_through_xcom(monkeypatch, engine, engine_b, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_OP_SRC", json.dumps({"conn_type": "docker_engine", "host": engine.unix_url}))
    monkeypatch.setenv("AIRFLOW_CONN_OP_DST", json.dumps({"conn_type": "docker_engine", "host": engine_b.unix_url}))
    assert SaveImageOperator.template_fields == ("image", "path", "platforms")
    assert DockerLoadOperator.template_fields == ("source", "tag", "engine_conn_id", "platform")
    artifact = SaveImageOperator(task_id="save", image=BASE, path=str(tmp_path / "a.tar"), engine_conn_id="op_src").execute({})
    json.dumps(artifact)  # plain values only: XCom-safe
    assert artifact["kind"] == "docker-archive" and artifact["path"] == str(tmp_path / "a.tar")
    drop(engine_b, artifact["image_id"])
    result = DockerLoadOperator(task_id="load", source=artifact, tag="op/load:1", engine_conn_id="op_dst").execute({})
    assert result["image_id"] == artifact["image_id"]
    assert result["tags"] == ["op/load:1"]
    assert result["engine"] == engine_b.unix_url
    by_path = DockerLoadOperator(
        task_id="load_path", source=artifact["path"], tag="op/path:1", skip_existing=False, engine_conn_id="op_dst"
    ).execute({})
    assert by_path["image_id"] == artifact["image_id"]
    assert (by_path["mode"], by_path["layers_skipped"]) == ("delta", len(artifact["layers"]))
    assert by_path["bytes_sent"] < 64 << 10  # manifest, config and headers only


# --- errors: each names the cause, and leaves engine and disk unchanged ---------------------------------------


def test_digest_mismatch_loads_nothing_and_tags_nothing(monkeypatch, engine_b, saved):
    empty(engine_b)  # a delta load would not read the layers the engine has, so not hash the whole file
    before = snapshot(engine_b)
    tampered = DockerArchive(**{**saved.to_xcom(), "sha256": "sha256:" + "0" * 64})
    hook = connect(monkeypatch, "dst_mismatch", engine_b.unix_url)
    with pytest.raises(DigestMismatch, match=f"{saved.path}: sha256 is {saved.sha256}, the artifact says sha256:0000"):
        hook.load_archive(tampered, tags=["must/not:exist"])
    assert snapshot(engine_b) == before


@pytest.mark.parametrize("keep", [0.05, 0.5, 0.98])
def test_truncated_archive_loads_nothing(monkeypatch, engine_b, saved, tmp_path, keep):
    drop(engine_b, saved.image_id)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(Path(saved.path).read_bytes()[: int(saved.size * keep)])
    before = snapshot(engine_b)
    with pytest.raises(ArchiveError, match=f"{cut}: the archive is truncated|{cut}: not a docker-archive"):
        connect(monkeypatch, "dst_cut", engine_b.unix_url).load_archive(str(cut), tags=["must/not:exist"])
    assert snapshot(engine_b) == before


def test_not_an_archive_is_refused_before_the_engine_sees_it(monkeypatch, engine_b, tmp_path):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(os.urandom(100_000))
    hook = connect(monkeypatch, "dst_junk", engine_b.unix_url)
    with pytest.raises(ArchiveError, match=f"{junk}: not a tar archive"):
        hook.load_archive(str(junk))
    assert hook.client.dialer.counter.sent < 1024  # not even the first chunk left this machine
    empty = tmp_path / "empty.tar"
    empty.write_bytes(b"")
    with pytest.raises(ArchiveError, match="the archive is empty"):
        hook.load_archive(str(empty))


def test_invalid_tag_is_refused_before_loading(monkeypatch, engine_b, saved):
    drop(engine_b, saved.image_id)
    before = snapshot(engine_b)
    hook = connect(monkeypatch, "dst_tag", engine_b.unix_url)
    with pytest.raises(InvalidReference, match="invalid image reference 'app:Bad Tag!'"):
        hook.load_archive(saved, tags=["good/tag:1", "app:Bad Tag!"])
    assert snapshot(engine_b) == before


def test_missing_image_and_socket_are_named(monkeypatch, engine, tmp_path):
    hook = connect(monkeypatch, "src_missing", engine.unix_url)
    with pytest.raises(ImageNotFound, match=f"{engine.unix_url}: inspect image 'no/such:image' failed \\(404\\)"):
        hook.save_image("no/such:image", str(tmp_path / "x.tar"))
    gone = connect(monkeypatch, "gone", f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(ConnectError, match=f"socket {tmp_path}/nothing.sock does not exist"):
        gone.client.ping()
    refused = connect(monkeypatch, "refused", "tcp://127.0.0.1:1", tls="false")
    with pytest.raises(ConnectError, match="connection refused"):
        refused.client.ping()
    assert os.listdir(tmp_path) == []


def test_unwritable_destination_leaves_nothing(monkeypatch, engine, tmp_path):
    hook = connect(monkeypatch, "src_dest", engine.unix_url)
    (tmp_path / "a-file").write_bytes(b"")
    with pytest.raises(DestinationError, match="cannot create .*/a-file: File exists"):
        hook.save_image(BASE, str(tmp_path / "a-file" / "x.tar"))
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "x.tar").mkdir()  # a directory with someone's data in the way: refused, never deleted
    (locked / "x.tar" / "theirs.txt").write_text("keep me")
    with pytest.raises(DestinationError, match="cannot write|is a directory"):
        hook.save_image(BASE, str(locked / "x.tar"))
    assert os.listdir(locked) == ["x.tar"] and (locked / "x.tar" / "theirs.txt").read_text() == "keep me"


def test_tls_with_the_wrong_ca_or_no_client_cert_fails_clearly(monkeypatch, engine, tls_material):
    wrong_ca = connect(monkeypatch, "tls_wrong", engine.tcp_url, tls_ca_cert=tls_material.other_ca_cert)
    with pytest.raises(TLSError, match=f"TLS verification failed for {engine.tcp_url}"):
        wrong_ca.client.ping()
    no_cert = connect(monkeypatch, "tls_nocert", engine.tcp_url, tls_ca_cert=tls_material.ca_cert)
    with pytest.raises(TLSError, match="refused us: .*CERTIFICATE.*check tls_client_cert"):
        no_cert.client.ping()


@pytest.mark.parametrize(
    ("case", "overrides", "error", "needle"),
    [
        ("unknown host key", {"known_hosts": os.devnull}, HostKeyError, "is unknown"),
        ("changed host key", {"known_hosts": "OTHER"}, HostKeyError, "host key CHANGED"),
        ("wrong key", {"key_file": "WRONG"}, SSHAuthError, "refused authentication as 'root'"),
        ("passphrase missing", {"key_file": "PROTECTED"}, SSHAuthError, "encrypted and no private_key_passphrase"),
        ("wrong port", {}, ConnectError, "connection refused"),
    ],
)
def test_ssh_failures_name_the_cause(monkeypatch, engine, sshd, case, overrides, error, needle):
    names = {"OTHER": sshd.other_known_hosts, "WRONG": sshd.wrong_key, "PROTECTED": sshd.client_key_protected}
    extra = ssh_extra(sshd, **{k: names.get(v, v) for k, v in overrides.items()})
    port = 1 if case == "wrong port" else sshd.port
    hook = connect(monkeypatch, "ssh_bad", f"ssh://root@127.0.0.1:{port}{engine.socket_path}", **extra)
    with pytest.raises(error, match=needle):
        hook.client.ping()


def test_ssh_passphrase_inline_key_and_pinned_host_key_work(monkeypatch, engine, sshd):
    hook = connect(
        monkeypatch,
        "ssh_good",
        f"ssh://root@127.0.0.1:{sshd.port}{engine.socket_path}",
        private_key=Path(sshd.client_key_protected).read_text(),
        private_key_passphrase=sshd.protected_passphrase,
        host_key=sshd.host_key_line,
        look_for_keys="false",
    )
    assert hook.test_connection()[0] is True


def test_on_kill_cuts_a_load_in_flight_and_the_engine_keeps_nothing(monkeypatch, engine_b, saved, tmp_path):
    """A FIFO source trickles the archive, as a slow disk would; on_kill must end the upload at once."""
    import threading
    import time

    drop(engine_b, saved.image_id)
    before = snapshot(engine_b)
    fifo = tmp_path / "slow.tar"
    os.mkfifo(fifo)
    data = Path(saved.path).read_bytes()
    release = threading.Event()

    def feed() -> None:
        with open(fifo, "wb") as pipe:
            pipe.write(data[: len(data) // 2])
            for start in range(len(data) // 2, len(data), 16384):  # then a trickle until the reader is gone
                if release.wait(0.05):
                    return
                try:
                    pipe.write(data[start : start + 16384])
                    pipe.flush()
                except BrokenPipeError:
                    return

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    monkeypatch.setenv("AIRFLOW_CONN_KILL_DST", json.dumps({"conn_type": "docker_engine", "host": engine_b.unix_url}))
    op = DockerLoadOperator(task_id="load", source=str(fifo), tag="killed/load:1", engine_conn_id="kill_dst")
    outcome: dict = {}

    def execute() -> None:
        try:
            op.execute({})
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    runner = threading.Thread(target=execute)
    runner.start()
    deadline = time.monotonic() + 20
    while op.hooks[0].client.dialer.counter.sent < len(data) // 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    op.on_kill()
    runner.join(5)
    release.set()
    assert not runner.is_alive(), "on_kill did not stop the load"
    assert isinstance(outcome.get("error"), TransferError), outcome
    time.sleep(0.5)
    assert snapshot(engine_b) == before
