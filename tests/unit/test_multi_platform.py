"""Multi-platform builds and artifacts, without a daemon: the request, the emulation error, what the artifact lists."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from airflow_provider_artiload.artifacts import DockerArchive
from airflow_provider_artiload.buildkit.client import BuildKitClient, BuildRequest, Worker
from airflow_provider_artiload.exceptions import BuildError
from airflow_provider_artiload.oci.manifests import choose, listed, platforms_of
from airflow_provider_artiload.oci.platform import parse
from tests.unit.archives import docker_archive, layer_tar, oci_archive, scan


def never_dial():
    raise AssertionError("must not connect")


@pytest.fixture
def ctx(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    return tmp_path


def test_platforms_are_one_solve_with_every_platform(ctx):
    request = BuildRequest(context=str(ctx), export="oci", output=object(), platforms=("linux/arm64/v8", "linux/amd64"))
    request.validate()
    assert request.frontend_attrs()["platform"] == "linux/arm64,linux/amd64"
    both = BuildRequest(context=str(ctx), image="x:1", platform="linux/amd64", platforms=("linux/arm64", "linux/x86_64"))
    assert both.target_platforms() == ["linux/amd64", "linux/arm64"]
    # the single value keeps working, also as buildx's comma-separated list
    assert BuildRequest(context=str(ctx), image="x:1", platform="linux/arm64").frontend_attrs()["platform"] == "linux/arm64"
    assert BuildRequest(context=str(ctx), image="x:1", platform="linux/arm64,linux/amd64").target_platforms() == [
        "linux/arm64", "linux/amd64"]
    assert "platform" not in BuildRequest(context=str(ctx), image="x:1").frontend_attrs()


@pytest.mark.parametrize("platforms", [("linux",), ("linux/arm64", "arm64"), ("linux/amd64/v2/x",)])
def test_a_bad_platform_fails_before_connecting(ctx, platforms):
    with pytest.raises(BuildError, match="invalid platform"):
        BuildKitClient(never_dial).solve(BuildRequest(context=str(ctx), image="x:1", platforms=platforms))


class _Client(BuildKitClient):
    def list_workers(self, timeout: float = 30.0) -> list[Worker]:
        return [Worker(id="w", labels={}, platforms=["linux/amd64", "linux/386"])]


def _rpc_error(details: str):
    import grpc

    class Error(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.UNKNOWN

        def details(self):
            return details

    return Error()


def _printer(name: str, error: str, lines: list[str]):
    state = SimpleNamespace(number=7, name=name, error=error, lines=lines)
    return SimpleNamespace(failed=lambda: state, vertices={"x": state})


def test_exec_format_error_names_the_platform_and_the_fix(ctx):
    client = _Client(never_dial, where="docker://unix:///x.sock")
    request = BuildRequest(context=str(ctx), export="oci", output=object(), platforms=("linux/amd64", "linux/s390x"))
    session = SimpleNamespace(closed=SimpleNamespace(is_set=lambda: False))
    error = client._solve_error(
        _rpc_error('process "/bin/sh -c uname -m > /arch" did not complete successfully: exit code: 1'),
        request,
        _printer("[linux/s390x 2/2] RUN uname -m > /arch", "exit code: 1", ["exec /bin/sh: exec format error"]),
        None,
        session,
    )
    text = str(error)
    assert isinstance(error, BuildError)
    assert "linux/s390x" in text and "linux/amd64 or" not in text
    assert "QEMU" in text and "binfmt_misc" in text and "exec format error" in text
    assert "linux/amd64, linux/386" in text  # what the builder does run


def test_exec_format_error_of_a_single_platform_build_names_that_platform(ctx):
    client = _Client(never_dial, where="docker://x")
    request = BuildRequest(context=str(ctx), image="x:1", platform="linux/arm64")
    session = SimpleNamespace(closed=SimpleNamespace(is_set=lambda: False))
    error = client._solve_error(_rpc_error("failed to solve: exec format error"), request,
                                _printer("[2/2] RUN true", "", []), None, session)
    assert "for linux/arm64 (exec format error)" in str(error)


def test_other_failures_are_not_blamed_on_emulation(ctx):
    client = _Client(never_dial, where="docker://x")
    request = BuildRequest(context=str(ctx), image="x:1", platforms=("linux/arm64", "linux/amd64"))
    session = SimpleNamespace(closed=SimpleNamespace(is_set=lambda: False))
    error = client._solve_error(_rpc_error("exit code: 2"), request,
                                _printer("[linux/arm64 2/2] RUN false", "exit code: 2", ["boom"]), None, session)
    assert "QEMU" not in str(error) and "boom" in str(error)


def _artifact(data: bytes, tmp_path) -> DockerArchive:
    return DockerArchive.of_index(scan(data), path=str(tmp_path / "a.tar"), sha256="sha256:" + "0" * 64, size=len(data))


def test_a_multi_platform_artifact_lists_every_platform_with_its_manifest(tmp_path):
    data, digests = oci_archive(platforms=["linux/arm64", "linux/amd64"])
    artifact = _artifact(data, tmp_path)
    assert artifact.platforms == [
        {"platform": "linux/arm64", "manifest_digest": digests["manifest:linux/arm64"]},
        {"platform": "linux/amd64", "manifest_digest": digests["manifest:linux/amd64"]},
    ]
    assert artifact.index_digest == digests["index"]
    assert DockerArchive.from_xcom(artifact.to_xcom()) == artifact


def test_single_platform_and_legacy_archives_list_their_one_image(tmp_path):
    data, digests = oci_archive()
    assert _artifact(data, tmp_path).platforms == [{"platform": "linux/amd64", "manifest_digest": digests["manifest"]}]
    legacy = _artifact(docker_archive([layer_tar({"a": b"1"})])[0], tmp_path)
    assert [p["manifest_digest"] for p in legacy.platforms] == [None]


def test_an_older_artifact_without_platforms_still_loads():
    old = {"kind": "docker-archive", "path": "/x.tar", "sha256": "sha256:" + "1" * 64, "size": 3, "image_id": "sha256:" + "2" * 64}
    assert DockerArchive.from_xcom(old).platforms == []


def test_attestations_are_not_listed_and_choose_follows_containerds_rules():
    data, _ = oci_archive(platforms=["linux/amd64", "linux/arm"])
    images = listed(scan(data))
    assert platforms_of(images) == "linux/amd64, linux/arm/v7"
    assert choose(images, parse("linux/arm/v8")) is images[1]
    assert choose(images, parse("linux/arm64")) is images[1]  # 32-bit arm on arm64, as containerd's Only
    assert choose(images, parse("linux/s390x")) is None


def _hook(monkeypatch, store: str):
    import json

    from airflow_provider_artiload.hooks import buildkit as hook_module

    monkeypatch.setenv("AIRFLOW_CONN_MP_BK", json.dumps({"conn_type": "buildkit", "host": "docker://unix:///nonexistent.sock"}))
    monkeypatch.setattr(hook_module, "engine_store", lambda endpoint, timeout=30.0: store)
    hook = hook_module.BuildKitHook("mp_bk")

    class Reached(Exception):
        pass

    hook.__dict__["client"] = SimpleNamespace(solve=lambda request, log=None: (_ for _ in ()).throw(Reached(request)))
    return hook, Reached


def test_an_image_of_several_platforms_is_refused_for_a_classic_store_before_the_build(ctx, monkeypatch):
    hook, _ = _hook(monkeypatch, "classic")
    with pytest.raises(BuildError, match=r"classic image store.*cannot hold a multi-platform image of linux/amd64, linux/arm64"):
        hook.build(context=str(ctx), image="x:1", platforms=["linux/amd64", "linux/arm64"])


def test_an_image_of_several_platforms_is_built_on_a_containerd_store(ctx, monkeypatch):
    hook, reached = _hook(monkeypatch, "containerd")
    with pytest.raises(reached) as info:
        hook.build(context=str(ctx), image="x:1", platforms="linux/amd64,linux/arm64")
    assert info.value.args[0].frontend_attrs()["platform"] == "linux/amd64,linux/arm64"
    hook, reached = _hook(monkeypatch, "classic")  # one platform into a classic store is fine
    with pytest.raises(reached):
        hook.build(context=str(ctx), image="x:1", platforms=["linux/arm64"])


def test_docker_export_of_several_platforms_writes_the_oci_index(ctx):
    many = BuildRequest(context=str(ctx), export="docker", output=object(), image="x:1", platforms=("linux/amd64", "linux/arm64"))
    assert many.exporter() == ("oci", {"name": "x:1"})
    one = BuildRequest(context=str(ctx), export="docker", output=object(), image="x:1", platforms=("linux/arm64",))
    assert one.exporter() == ("docker", {"name": "x:1"})


def test_an_empty_templated_platforms_asks_for_nothing(ctx, monkeypatch):
    hook, reached = _hook(monkeypatch, "classic")
    with pytest.raises(reached) as info:
        hook.build(context=str(ctx), image="x:1", platforms="")
    assert "platform" not in info.value.args[0].frontend_attrs()
