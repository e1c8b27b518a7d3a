"""A heterogeneous fleet served in one call: every target gets, and runs, the image of its own platform.

Real parts only: a linux/arm64 + linux/amd64 artifact built by the BuildKit of the Docker 28 containerd-store
engine (the arm64 RUN step runs under QEMU), loaded in ONE DockerLoadOperator call into Docker 20.10 (classic),
Docker 28 classic, Docker 28 containerd store, a containerd 2.x node over the loopback sshd, and engine B
(of this pass's engine kind) whose connection says ``platform: linux/arm64``.

Engine B is an amd64 engine with QEMU STANDING IN for an arm64 host: there is no arm64 machine here. What is
real: it is given only the arm64 image, holds it, and runs it (``uname -m`` says aarch64, through QEMU).
What is not: an arm64 kernel under it.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import tarfile

import docker
import pytest

from airflow_provider_artiload.operators import DockerLoadOperator
from tests.integration.containerd.test_mixed_fleet import listed_digest, node_conn
from tests.integration.test_dags import airflow_env, dags_test  # noqa: F401  (a fixture and a helper)
from tests.integration.test_platforms import MACHINE, amd64_busybox, arm64_busybox, buildkit_conn, make_context  # noqa: F401

pytestmark = pytest.mark.parametrize("containerd", ["2.x"], indirect=True, ids=["containerd-2.x"])


def engine_conn(monkeypatch, conn_id: str, engine, **extra) -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}",
                       json.dumps({"conn_type": "docker_engine", "host": engine.unix_url, "extra": extra}))
    return conn_id


def run(engine, image: str, *command: str) -> str:
    with contextlib.closing(docker.DockerClient(base_url=engine.unix_url, version="auto", timeout=120)) as client:
        return client.containers.run(image, list(command), network_mode="none", remove=True).decode()


def images_of(engine) -> set[str]:
    with contextlib.closing(docker.DockerClient(base_url=engine.unix_url, version="auto")) as client:
        return {i.id for i in client.images.list(all=True)}


def share(path: str, manifest_digest: str) -> int:
    """One platform's bytes in the archive: its manifest, config and layers."""
    with tarfile.open(path) as tar:
        def blob(digest: str) -> bytes:
            return tar.extractfile(f"blobs/sha256/{digest.split(':')[1]}").read()

        manifest = json.loads(blob(manifest_digest))
        return len(blob(manifest_digest)) + manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])


def build(monkeypatch, builder, tmp_path, arm64_busybox, amd64_busybox, platforms: list[str]) -> tuple[dict, str]:
    from airflow_provider_artiload.operators.build import BuildArtifactOperator

    stamp = secrets.token_hex(4)
    context = make_context(tmp_path / f"ctx-{stamp}", stamp, arm64_busybox, amd64_busybox)
    artifact = BuildArtifactOperator(
        task_id="build", context=str(context), export="oci", output=str(tmp_path / f"fleet-{stamp}.tar"),
        image=f"fleet/app:{stamp}", platforms=platforms, buildkit_conn_id=buildkit_conn(monkeypatch, builder, "fleet_bk"),
    ).execute({})
    assert [p["platform"] for p in artifact["platforms"]] == platforms
    return artifact, stamp


@pytest.mark.parametrize("order", [["linux/arm64", "linux/amd64"], ["linux/amd64", "linux/arm64"]],
                         ids=["arm64-first", "amd64-first"])
def test_one_load_gives_every_target_the_image_of_its_platform(monkeypatch, engines_by_kind, engine_b, containerd, sshd,
                                                                 tmp_path, arm64_busybox, amd64_busybox, order):
    artifact, stamp = build(monkeypatch, engines_by_kind["28-containerd"], tmp_path, arm64_busybox, amd64_busybox, order)
    digests = {p["platform"]: p["manifest_digest"] for p in artifact["platforms"]}
    shares = {platform: share(artifact["path"], digest) for platform, digest in digests.items()}
    engines = {f"pf_{kind.replace('-', '_')}": eng for kind, eng in engines_by_kind.items()}
    conns = [engine_conn(monkeypatch, conn_id, eng) for conn_id, eng in engines.items()]
    # engine B: an amd64 engine whose connection says arm64, with QEMU standing in for an arm64 host
    conns.append(engine_conn(monkeypatch, "pf_arm64", engine_b, platform="linux/arm64"))
    conns.append(node_conn(monkeypatch, containerd, sshd))
    tag = f"fleet/app:{stamp}"

    result = DockerLoadOperator(task_id="load", source=artifact, engine_conn_id=conns, tag=tag).execute({})

    by_conn = dict(zip(conns, result["targets"]))
    expected = {**{c: "linux/amd64" for c in conns}, "pf_arm64": "linux/arm64"}
    for conn_id, outcome in by_conn.items():
        platform = expected[conn_id]
        assert outcome["platform"] == platform and outcome["target_platform"] == platform, (conn_id, outcome)
        assert outcome["manifest_digest"] == digests[platform]
        # about one platform's share: never the other platform's layers (the archive holds both)
        assert outcome["bytes_sent"] < shares[platform] + (64 << 10), (conn_id, outcome["bytes_sent"], shares)
        if outcome["mode"] == "full":
            assert outcome["bytes_sent"] > shares[platform] * 0.95
    assert artifact["size"] > max(shares.values()) + min(shares.values()) - (64 << 10)
    for conn_id, eng in [*engines.items(), ("pf_arm64", engine_b)]:
        assert run(eng, tag, "uname", "-m") == f"{MACHINE[expected[conn_id]]}\n", conn_id
        assert run(eng, tag, "cat", "/arch") == f"{MACHINE[expected[conn_id]]}\n", conn_id  # what its RUN step recorded
    name = f"docker.io/{tag}"
    assert listed_digest(containerd, name) == digests["linux/amd64"]
    out = containerd.ctr("run", "--rm", "--runtime", "io.containerd.runc.v2", name, f"pf-{stamp}", "/bin/uname", "-m").stdout
    assert out == "x86_64\n"
    # the same again: every target skips, per platform
    again = DockerLoadOperator(task_id="again", source=artifact, engine_conn_id=conns, tag=tag).execute({})
    assert {t["mode"] for t in again["targets"]} == {"skipped"} and {t["bytes_sent"] for t in again["targets"]} == {0}
    assert [t["platform"] for t in again["targets"]] == [expected[c] for c in conns]


def test_a_target_whose_platform_the_source_lacks_fails_alone(monkeypatch, engines_by_kind, engine_c, containerd, sshd,
                                                              tmp_path, arm64_busybox, amd64_busybox):
    artifact, stamp = build(monkeypatch, engines_by_kind["28-containerd"], tmp_path, arm64_busybox, amd64_busybox,
                            ["linux/amd64", "linux/arm64"])
    good = engine_conn(monkeypatch, "pf_good", engines_by_kind["28-classic"])
    lacking = engine_conn(monkeypatch, "pf_armv7", engine_c, platform="linux/arm/v7")  # an arm/v7 box: takes v6/v5, not arm64
    before = images_of(engine_c)
    tag = f"fleet/lacking:{stamp}"
    with pytest.raises(Exception) as info:
        DockerLoadOperator(task_id="load", source=artifact, engine_conn_id=[good, lacking], tag=tag).execute({})
    message = str(info.value)
    assert "failed on 1 of 2" in message and "linux/arm/v7" in message and "linux/amd64, linux/arm64" in message
    assert images_of(engine_c) == before  # nothing loaded or tagged there
    assert run(engines_by_kind["28-classic"], tag, "uname", "-m") == "x86_64\n"  # the other target finished


def test_all_platforms_keeps_the_index_on_a_containerd_store_and_a_node(monkeypatch, engines_by_kind, containerd, sshd,
                                                                       tmp_path, arm64_busybox, amd64_busybox):
    artifact, stamp = build(monkeypatch, engines_by_kind["28-containerd"], tmp_path, arm64_busybox, amd64_busybox,
                            ["linux/amd64", "linux/arm64"])
    store = engines_by_kind["28-containerd"]
    conns = [engine_conn(monkeypatch, "pf_all", store), node_conn(monkeypatch, containerd, sshd)]
    tag = f"fleet/all:{stamp}"
    result = DockerLoadOperator(task_id="load", source=artifact, engine_conn_id=conns, tag=tag, all_platforms=True).execute({})
    assert [t["image_id"] for t in result["targets"]] == [artifact["index_digest"]] * 2
    with contextlib.closing(docker.DockerClient(base_url=store.unix_url, version="auto")) as client:
        assert client.api.inspect_image(tag)["Id"] == artifact["index_digest"]
        for platform, machine in MACHINE.items():
            out = client.containers.run(tag, ["cat", "/arch"], platform=platform, network_mode="none", remove=True)
            assert out == f"{machine}\n".encode()
    assert listed_digest(containerd, f"docker.io/{tag}") == artifact["index_digest"]
    # every platform's blobs are on the node: its content store has each manifest's layers
    for entry in artifact["platforms"]:
        assert entry["manifest_digest"] in containerd.ctr("content", "ls", "-q").stdout.split()


def test_fleet_refresh_serves_an_arm64_target(monkeypatch, airflow_env, engines_by_kind, engine_b, containerd, sshd,  # noqa: F811
                                              tmp_path, arm64_busybox, amd64_busybox):  # noqa: F811
    """The example DAG with ``artiload_platforms``: one build, and the arm64 target (engine B, an amd64 engine with
    QEMU standing in for an arm64 host) gets the arm64 image while the amd64 engine and the node get theirs."""
    from airflow_provider_artiload.operators.build import BuildArtifactOperator

    builder = engines_by_kind["28-containerd"]
    base = "artiload-test/busybox:multi"
    context = make_context(tmp_path / "base", "base", arm64_busybox, amd64_busybox,
                           'FROM scratch\nARG TARGETARCH\nCOPY busybox-${TARGETARCH} /bin/busybox\n'
                           'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n')
    BuildArtifactOperator(task_id="base", context=str(context), export="image", image=base,
                          platforms=["linux/amd64", "linux/arm64"], buildkit_conn_id=buildkit_conn(monkeypatch, builder)).execute({})
    env = dict(airflow_env)
    ssh = {"key_file": sshd.client_key, "known_hosts": sshd.known_hosts, "look_for_keys": "false"}
    conns = {
        "ARTILOAD_BUILD_ENGINE": {"conn_type": "docker_engine", "host": builder.unix_url},
        "ARTILOAD_BUILDER": {"conn_type": "buildkit", "host": "docker://",
                             "extra": {"engine_conn_id": "artiload_build_engine", "network": "none"}},
        "ARTILOAD_LOCAL": {"conn_type": "docker_engine", "host": engines_by_kind["28-classic"].unix_url},
        "ARTILOAD_ARM": {"conn_type": "docker_engine", "host": engine_b.unix_url, "extra": {"platform": "linux/arm64"}},
        "ARTILOAD_NODE": {"conn_type": "containerd", "host": f"ssh://{sshd.user}@{sshd.host}:{sshd.port}{containerd.socket_path}",
                          "extra": ssh},
    }
    env.update({f"AIRFLOW_CONN_{k}": json.dumps(v) for k, v in conns.items()})
    env.update({"AIRFLOW_VAR_ARTILOAD_TARBALLS": str(tmp_path), "AIRFLOW_VAR_ARTILOAD_BASE_IMAGE": base,
                "AIRFLOW_VAR_ARTILOAD_PLATFORMS": "linux/amd64,linux/arm64",
                "AIRFLOW_VAR_ARTILOAD_FLEET": json.dumps(["artiload_local", "artiload_arm", "artiload_node"])})
    dags_test(env, "fleet_refresh", "2026-03-03")
    assert run(engines_by_kind["28-classic"], "artiload/fleet:latest", "uname", "-m") == "x86_64\n"
    assert run(engine_b, "artiload/fleet:latest", "uname", "-m") == "aarch64\n"  # through QEMU: the stand-in
    assert run(engine_b, "artiload/fleet:latest", "cat", "/app/DATA_DATE") == "2026-03-03\n"
    out = containerd.ctr("run", "--rm", "--runtime", "io.containerd.runc.v2", "docker.io/artiload/fleet:latest",
                         "fleet-pf", "/bin/uname", "-m").stdout
    assert out == "x86_64\n"


def test_save_several_platforms_from_a_node(monkeypatch, engines_by_kind, containerd, sshd, tmp_path, arm64_busybox,
                                            amd64_busybox):
    from airflow_provider_artiload.operators import SaveImageOperator

    artifact, stamp = build(monkeypatch, engines_by_kind["28-containerd"], tmp_path, arm64_busybox, amd64_busybox,
                            ["linux/amd64", "linux/arm64"])
    node = node_conn(monkeypatch, containerd, sshd)
    tag = f"fleet/nodesave:{stamp}"
    DockerLoadOperator(task_id="load", source=artifact, engine_conn_id=[node], tag=tag, all_platforms=True).execute({})
    saved = SaveImageOperator(task_id="save", image=tag, path=str(tmp_path / "out") + "/", engine_conn_id=node,
                              platforms=["linux/amd64", "linux/arm64"]).execute({})
    assert saved["image_id"] == artifact["index_digest"]
    assert saved["platforms"] == artifact["platforms"]
    for entry in saved["platforms"]:
        assert share(saved["path"], entry["manifest_digest"]) == share(artifact["path"], entry["manifest_digest"])
    # and it serves a fleet again: the arm64 stand-in (an amd64 engine with QEMU) gets the arm64 image from it
    arm = engine_conn(monkeypatch, "pf_node_arm", engines_by_kind["system"], platform="linux/arm64")
    result = DockerLoadOperator(task_id="again", source=saved, engine_conn_id=arm, tag=tag).execute({})
    assert result["platform"] == "linux/arm64"
    assert run(engines_by_kind["system"], tag, "cat", "/arch") == "aarch64\n"
