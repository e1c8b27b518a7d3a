"""Heterogeneous fleets on real engines: multi-platform builds, and every target given the image of its platform.

Real parts only: the three engine kinds (Docker 20.10 classic, Docker 28 classic, Docker 28 containerd
store), a standalone containerd 2.x node over the loopback sshd, BuildKit inside the containerd-store
engine, QEMU user emulation from Debian (qemu-user-static, its aarch64 binfmt_misc handler registered by
scripts/setup_qemu.sh) and an arm64 busybox from Debian's archive (scripts/fetch_arm64.sh).

There is no arm64 host here. An amd64 engine whose connection says ``platform: linux/arm64`` STANDS IN
for one: QEMU runs its arm64 containers, so "it holds and runs the arm64 image" is real, but the kernel
under it is amd64. Tests that rely on that say so.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import subprocess
import tarfile
from pathlib import Path

import docker
import pytest

from airflow_provider_artiload.exceptions import BuildError
from airflow_provider_artiload.operators.build import BuildArtifactOperator

ROOT = Path(__file__).resolve().parents[2]
PLATFORMS = ["linux/arm64", "linux/amd64"]
MACHINE = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
DOCKERFILE = """\
FROM scratch
ARG TARGETARCH
COPY busybox-${TARGETARCH} /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN uname -m > /arch && echo "{stamp}" > /stamp
"""


def _script(name: str) -> None:
    """Run one of the lab's setup scripts (idempotent); a failure FAILS the test with the script's reason."""
    done = subprocess.run(["bash", str(ROOT / "scripts" / name)], capture_output=True, text=True)
    if done.returncode:
        pytest.fail(f"scripts/{name} failed: {done.stderr.strip() or done.stdout.strip()}", pytrace=False)


@pytest.fixture(scope="session")
def arm64_busybox() -> bytes:
    """Debian's arm64 static busybox, with QEMU's aarch64 handler registered (the lab setup does both)."""
    _script("setup_qemu.sh")
    _script("fetch_arm64.sh")
    return (ROOT / ".engines" / "arm64" / "busybox").read_bytes()


@pytest.fixture(scope="session")
def amd64_busybox() -> bytes:
    import harness

    return Path(harness._binary("busybox", "busybox-static")).read_bytes()


def make_context(root: Path, stamp: str, arm64: bytes, amd64: bytes, dockerfile: str = DOCKERFILE) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text(dockerfile.replace("{stamp}", stamp))
    for arch, data in (("arm64", arm64), ("amd64", amd64)):
        path = root / f"busybox-{arch}"
        path.write_bytes(data)
        path.chmod(0o755)
    return root


def buildkit_conn(monkeypatch, engine, conn_id: str = "mp_bk") -> str:
    conn = {"conn_type": "buildkit", "host": f"docker://{engine.unix_url}", "extra": {"network": "none"}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


def docker_client(engine) -> docker.DockerClient:
    return docker.DockerClient(base_url=engine.unix_url, version="auto", timeout=120)


def archive_files(path: str, manifest_digest: str, *names: str) -> dict[str, bytes]:
    """Files out of one platform's layers of an OCI archive (the manifest's layers, any compression)."""
    import gzip

    found: dict[str, bytes] = {}
    with tarfile.open(path) as outer:
        def blob(digest: str) -> bytes:
            return outer.extractfile(f"blobs/sha256/{digest.split(':')[1]}").read()

        manifest = json.loads(blob(manifest_digest))
        for layer in manifest["layers"]:
            data = blob(layer["digest"])
            data = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
            with tarfile.open(fileobj=io.BytesIO(data)) as inner:
                for member in inner.getmembers():
                    if member.name.lstrip("./") in names and member.isfile():
                        found[member.name.lstrip("./")] = inner.extractfile(member).read()
    return found


@pytest.fixture(scope="module")
def builder(engines_by_kind):
    """The Docker 28 containerd-store engine: its BuildKit has the oci and docker exporters."""
    return engines_by_kind["28-containerd"]


# ---------------------------------------------------------------- 1. multi-platform builds


@pytest.mark.parametrize("export", ["oci", "docker"])
def test_one_solve_builds_every_platform_into_one_artifact(monkeypatch, builder, arm64_busybox, amd64_busybox, tmp_path, export):
    stamp = secrets.token_hex(4)
    context = make_context(tmp_path / "ctx", stamp, arm64_busybox, amd64_busybox)
    artifact = BuildArtifactOperator(
        task_id="build", context=str(context), export=export, output=str(tmp_path / f"app.{export}.tar"),
        image=f"mp/app:{stamp}", platforms=PLATFORMS, buildkit_conn_id=buildkit_conn(monkeypatch, builder),
    ).execute({})
    assert artifact["kind"] == "docker-archive" and artifact["index_digest"]
    assert [p["platform"] for p in artifact["platforms"]] == PLATFORMS
    assert len({p["manifest_digest"] for p in artifact["platforms"]}) == 2
    for entry in artifact["platforms"]:
        files = archive_files(artifact["path"], entry["manifest_digest"], "arch", "stamp")
        # the RUN step ran for each platform: under QEMU for arm64
        assert files == {"arch": f"{MACHINE[entry['platform']]}\n".encode(), "stamp": f"{stamp}\n".encode()}


def test_the_single_platform_argument_keeps_working(monkeypatch, builder, arm64_busybox, amd64_busybox, tmp_path):
    context = make_context(tmp_path / "ctx", "one", arm64_busybox, amd64_busybox)
    artifact = BuildArtifactOperator(
        task_id="build", context=str(context), export="oci", output=str(tmp_path / "one.tar"), image="mp/one:1",
        platform="linux/arm64", buildkit_conn_id=buildkit_conn(monkeypatch, builder),
    ).execute({})
    assert [p["platform"] for p in artifact["platforms"]] == ["linux/arm64"]
    assert archive_files(artifact["path"], artifact["platforms"][0]["manifest_digest"], "arch") == {"arch": b"aarch64\n"}


def test_a_containerd_store_engine_holds_the_multi_platform_image(monkeypatch, builder, arm64_busybox, amd64_busybox, tmp_path):
    stamp = secrets.token_hex(4)
    context = make_context(tmp_path / "ctx", stamp, arm64_busybox, amd64_busybox)
    result = BuildArtifactOperator(
        task_id="build", context=str(context), export="image", image=f"mp/image:{stamp}", platforms=PLATFORMS,
        buildkit_conn_id=buildkit_conn(monkeypatch, builder),
    ).execute({})
    with contextlib.closing(docker_client(builder)) as client:
        inspect = client.api.inspect_image(f"mp/image:{stamp}")
        assert inspect["Id"] == result["image_id"]  # the index digest: one image for both platforms
        for platform, machine in MACHINE.items():
            out = client.containers.run(f"mp/image:{stamp}", ["uname", "-m"], platform=platform, network_mode="none",
                                        remove=True)
            assert out == f"{machine}\n".encode()


def test_a_classic_store_engine_is_refused_before_the_build(monkeypatch, engines_by_kind, arm64_busybox, amd64_busybox, tmp_path):
    engine = engines_by_kind["28-classic"]
    context = make_context(tmp_path / "ctx", "refused", arm64_busybox, amd64_busybox)
    with contextlib.closing(docker_client(engine)) as client:
        before = {i.id for i in client.images.list(all=True)}
    with pytest.raises(BuildError, match=r"classic image store.*cannot hold a multi-platform image of linux/arm64, linux/amd64"):
        BuildArtifactOperator(task_id="build", context=str(context), export="image", image="mp/refused:1",
                              platforms=PLATFORMS, buildkit_conn_id=buildkit_conn(monkeypatch, engine, "mp_classic")).execute({})
    with contextlib.closing(docker_client(engine)) as client:
        assert {i.id for i in client.images.list(all=True)} == before
        assert not client.api.df().get("BuildCache")  # nothing was built: the refusal came first


def s390x_elf() -> bytes:
    """The 64-byte header of a big-endian ELF64 executable for s390x (e_machine 22): no handler runs it here."""
    ident = b"\x7fELF" + bytes([2, 2, 1, 0]) + bytes(8)
    header = ident + (2).to_bytes(2, "big") + (22).to_bytes(2, "big") + (1).to_bytes(4, "big") + (0x1000).to_bytes(8, "big")
    header += (64).to_bytes(8, "big") + bytes(8) + bytes(4) + (64).to_bytes(2, "big") + (56).to_bytes(2, "big")
    return header + bytes(2) + (64).to_bytes(2, "big") + bytes(4)


def test_a_platform_the_builder_cannot_emulate_gets_a_clear_error(monkeypatch, builder, arm64_busybox, amd64_busybox, tmp_path):
    assert not os.path.exists("/proc/sys/fs/binfmt_misc/qemu-s390x"), (
        "this test needs a platform without an emulator; qemu-s390x is registered here")
    context = make_context(tmp_path / "ctx", "x", arm64_busybox, amd64_busybox,
                           'FROM scratch\nCOPY tool /tool\nRUN ["/tool"]\n')
    (context / "tool").write_bytes(s390x_elf())
    (context / "tool").chmod(0o755)
    with pytest.raises(BuildError) as info:
        BuildArtifactOperator(task_id="build", context=str(context), export="oci", output=str(tmp_path / "x.tar"),
                              platforms=["linux/amd64", "linux/s390x"],
                              buildkit_conn_id=buildkit_conn(monkeypatch, builder)).execute({})
    message = str(info.value)
    assert "linux/s390x" in message and "QEMU" in message and "binfmt_misc" in message
    assert not (tmp_path / "x.tar").exists()


# ---------------------------------------------------------------- 5. saving several platforms


@pytest.mark.parametrize("platforms", [["linux/amd64", "linux/arm64"], ["linux/arm64"]], ids=["both", "arm64"])
def test_save_several_platforms_from_a_containerd_store_engine(monkeypatch, builder, arm64_busybox, amd64_busybox, tmp_path,
                                                               platforms):
    from airflow_provider_artiload.operators import SaveImageOperator

    stamp = secrets.token_hex(4)
    context = make_context(tmp_path / "ctx", stamp, arm64_busybox, amd64_busybox)
    BuildArtifactOperator(task_id="build", context=str(context), export="image", image=f"mp/save:{stamp}", platforms=PLATFORMS,
                          buildkit_conn_id=buildkit_conn(monkeypatch, builder)).execute({})
    monkeypatch.setenv("AIRFLOW_CONN_MP_SAVE", json.dumps({"conn_type": "docker_engine", "host": builder.unix_url}))
    artifact = SaveImageOperator(task_id="save", image=f"mp/save:{stamp}", path=str(tmp_path) + "/", engine_conn_id="mp_save",
                                 platforms=platforms).execute({})
    listed = {p["platform"]: p["manifest_digest"] for p in artifact["platforms"]}
    with tarfile.open(artifact["path"]) as tar:
        held = {m.name for m in tar.getmembers()}
    for platform in PLATFORMS:
        digest = listed.get(platform)
        whole = digest is not None and f"blobs/sha256/{digest.split(':')[1]}" in held
        if platform in platforms:
            assert whole, (platform, artifact["platforms"])
            files = archive_files(artifact["path"], digest, "arch", "stamp")
            assert files == {"arch": f"{MACHINE[platform]}\n".encode(), "stamp": f"{stamp}\n".encode()}
        else:
            assert not whole, f"{platform} was not asked for but is in the archive"
