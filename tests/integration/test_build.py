"""Builds against the REAL BuildKit inside the private test engine (no fakes).

The engine runs with ``--bridge=none``, so the connection sets
``network: none`` for RUN steps. Images are checked by running them.
"""

from __future__ import annotations

import json
import os
import stat
import tarfile
import threading
import time

import docker
import pytest
import structlog

from airflow_provider_artiload.artifacts import DockerArchive
from airflow_provider_artiload.buildkit.client import BuildKitClient, BuildRequest
from airflow_provider_artiload.exceptions import BuildError, ConnectError, DestinationError
from airflow_provider_artiload.hooks.buildkit import BuildKitHook
from airflow_provider_artiload.operators.build import BuildArtifactOperator

BASE = "artiload-test/busybox:latest"
SECRET = "s3cr3t-t0ken-value-91f2"
MTIME = 1_600_000_000

MULTI_STAGE = f"""\
FROM {BASE} AS build
ARG GREETING=unset
COPY . /src
RUN --mount=type=secret,id=token wc -c < /run/secrets/token > /secret-len && echo "greeting=$GREETING" > /greeting
RUN echo "built in build stage"

FROM {BASE} AS final
COPY --from=build /src /app
COPY --from=build /greeting /secret-len /
RUN ls /run/secrets 2>/dev/null | wc -l > /secrets-mounted-later

FROM final AS extra
RUN echo extra > /extra
"""


def _connect(monkeypatch, engine, conn_id: str = "bk") -> str:
    conn = {"conn_type": "buildkit", "host": f"docker://{engine.unix_url}", "extra": {"network": "none"}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


def _run(engine, image: str, script: str) -> str:
    client = docker.DockerClient(base_url=engine.unix_url, version="auto", timeout=60)
    try:
        return client.containers.run(image, ["sh", "-c", script], network_mode="none", remove=True).decode()
    finally:
        client.close()


def _rendered(entry: dict) -> str:
    """A captured structlog entry as the line the task log shows."""
    args = entry.get("positional_args")
    return entry["event"] % tuple(args) if args else str(entry["event"])


def _make_context(root) -> None:
    (root / "data").mkdir()
    (root / "bin").mkdir()
    (root / "ignored").mkdir()
    (root / "Dockerfile").write_text(MULTI_STAGE)
    (root / ".dockerignore").write_text("ignored/\n*.log\n!keep.log\n")
    (root / "data" / "file.txt").write_text("payload\n")
    (root / "data" / "h\u00e9llo w\u00f6rld.txt").write_text("unicode\n")
    os.link(root / "data" / "file.txt", root / "data" / "hard.txt")
    os.symlink("data/file.txt", root / "link")
    suid = root / "bin" / "suid"
    suid.write_text("#!/bin/sh\necho suid\n")
    os.chmod(suid, 0o4755)
    (root / "ignored" / "x").write_text("must not be sent")
    (root / "drop.log").write_text("excluded")
    (root / "keep.log").write_text("kept")
    for path in (root / "data" / "file.txt",):
        os.utime(path, (MTIME, MTIME))


def test_operator_builds_a_multi_stage_image_checked_by_running_it(monkeypatch, engine, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    _make_context(ctx)
    monkeypatch.setenv("BUILD_TOKEN", SECRET)
    op = BuildArtifactOperator(
        task_id="build",
        context=str(ctx),
        image="artiload-build/multi:1",
        build_args={"GREETING": "hello-args"},
        target="final",
        labels={"org.artiload.test": "yes"},
        secrets={"token": {"env": "BUILD_TOKEN"}},
        buildkit_conn_id=_connect(monkeypatch, engine),
    )
    with structlog.testing.capture_logs() as logs:
        artifact = op.execute({})
    lines_logged = [_rendered(entry) for entry in logs]
    log_text = "\n".join(lines_logged) + json.dumps(logs, default=str)
    json.dumps(artifact)
    assert artifact["kind"] == "image" and artifact["image"] == "artiload-build/multi:1"
    assert artifact["image_id"].startswith("sha256:") and artifact["engine"] == engine.unix_url
    assert SECRET not in log_text and SECRET not in json.dumps(artifact)
    step = next(line for line in lines_logged if line.endswith('RUN echo "built in build stage"'))
    number = step.split()[0]  # "#7"
    assert any(line.startswith(f"{number} ") and line.endswith(" built in build stage") for line in lines_logged)
    assert any(line.startswith(f"{number} DONE ") for line in lines_logged)

    client = docker.DockerClient(base_url=engine.unix_url, version="auto")
    inspected = client.images.get("artiload-build/multi:1")
    client.close()
    assert inspected.id == artifact["image_id"]
    assert inspected.labels.get("org.artiload.test") == "yes"

    out = _run(
        engine,
        artifact["image_id"],
        "cat /greeting /secret-len; cat /app/link; readlink /app/link; stat -c '%a' /app/bin/suid; "
        "stat -c '%i' /app/data/file.txt /app/data/hard.txt | uniq | wc -l; stat -c '%Y' /app/data/file.txt; "
        "cat '/app/data/h\u00e9llo w\u00f6rld.txt'; ls /app; test -e /extra && echo HAS-EXTRA; "
        f"grep -rlF {SECRET} /app /greeting /secret-len /etc; ls /run/secrets 2>&1 | wc -l",
    )
    lines = out.splitlines()
    assert lines[0] == "greeting=hello-args"
    assert lines[1].strip() == str(len(SECRET))  # the secret was mounted during the build...
    assert lines[2:4] == ["payload", "data/file.txt"]
    assert lines[4] == "4755"  # setuid kept
    assert lines[5].strip() == "1"  # hardlink: one inode for both names
    assert lines[6] == str(MTIME)
    assert lines[7] == "unicode"
    listing = lines[8:]
    assert "keep.log" in listing and "drop.log" not in listing and "ignored" not in listing
    assert "HAS-EXTRA" not in out  # target=final stopped before the extra stage
    assert SECRET not in out  # ...and is in no file of the image


def test_rebuilding_an_unchanged_context_sends_no_file_data(monkeypatch, engine, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {BASE}\nCOPY . /c\n")
    (ctx / "big.bin").write_bytes(os.urandom(3 << 20))
    for i in range(50):
        (ctx / f"small-{i}.txt").write_text(f"file {i}\n")
    hook = BuildKitHook(_connect(monkeypatch, engine))
    first = hook.build(context=str(ctx), image="artiload-build/rebuild:1")
    stats_first = hook.client.last_filesync.stats
    second = hook.build(context=str(ctx), image="artiload-build/rebuild:1")
    stats_second = hook.client.last_filesync.stats
    hook.close()
    assert stats_first.data_bytes >= (3 << 20) and stats_first.files_requested >= 51
    # No context file is sent again; newer BuildKit (Docker 28) re-reads the Dockerfile itself, 20.10's does not.
    dockerfile_size = (ctx / "Dockerfile").stat().st_size
    assert stats_second.files_requested <= 1 and stats_second.data_bytes in (0, dockerfile_size)
    assert second["image_id"] == first["image_id"]


def test_failing_run_names_the_step_exit_code_and_last_lines(monkeypatch, engine, tmp_path):
    (tmp_path / "Dockerfile").write_text(
        f"FROM {BASE}\nRUN echo first-line && echo second-line >&2 && echo last-words && exit 7\n"
    )
    op = BuildArtifactOperator(
        task_id="fail", context=str(tmp_path), image="artiload-build/fail:1", buildkit_conn_id=_connect(monkeypatch, engine)
    )
    with pytest.raises(BuildError) as caught:
        op.execute({})
    message = str(caught.value)
    assert "RUN echo first-line" in message and "exit code: 7" in message
    assert "second-line" in message and "last-words" in message


def test_dockerfile_syntax_error(monkeypatch, engine, tmp_path):
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\nCOPPY a b\n")
    with pytest.raises(BuildError, match=r"Dockerfile .* is invalid: .*line 2: unknown instruction: COPPY"):
        BuildKitHook(_connect(monkeypatch, engine)).build(context=str(tmp_path), image="x/y:1")


def test_missing_context_or_dockerfile_fails_before_connecting(monkeypatch, tmp_path):
    conn = {"conn_type": "buildkit", "host": "docker://unix:///nonexistent/docker.sock"}
    monkeypatch.setenv("AIRFLOW_CONN_NOWHERE", json.dumps(conn))
    hook = BuildKitHook("nowhere")
    with pytest.raises(BuildError, match=r"build context .*/missing does not exist"):
        hook.build(context=str(tmp_path / "missing"), image="x/y:1")
    with pytest.raises(BuildError, match=r"Dockerfile .*/Dockerfile does not exist"):
        hook.build(context=str(tmp_path), image="x/y:1")
    assert "client" not in hook.__dict__  # nothing was dialled
    ok, message = hook.test_connection()
    assert not ok and "/nonexistent/docker.sock" in message


def test_connection_lists_workers(monkeypatch, engine):
    ok, message = BuildKitHook(_connect(monkeypatch, engine)).test_connection()
    assert ok, message
    assert "worker" in message and "linux/amd64" in message


@pytest.mark.parametrize("export", ["docker", "oci"])
def test_docker_and_oci_exporters_per_image_store(monkeypatch, engine, tmp_path, export):
    """The classic store's BuildKit has neither exporter: a clear refusal, nothing written. The containerd
    store's has both: an artifact with its layers and identity, which loads and runs."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {BASE}\nRUN echo {export} > /exported-by\n")
    out = tmp_path / "image.tar"
    hook = BuildKitHook(_connect(monkeypatch, engine))
    if engine.kind.store == "classic":
        with pytest.raises(BuildError, match=rf"no '{export}' exporter.*export='image', then save it with SaveImageOperator"):
            hook.build(context=str(ctx), export=export, output=str(out), image=f"exp/{export}:1")
        assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["ctx"]  # nothing half-written
        return
    artifact = hook.build(context=str(ctx), export=export, output=str(out), image=f"exp/{export}:1")
    assert artifact["kind"] == "docker-archive" and artifact["path"] == str(out) and artifact["size"] == out.stat().st_size
    base_layers = docker.DockerClient(base_url=engine.unix_url, version="auto").images.get(BASE).attrs["RootFS"]["Layers"]
    assert artifact["layers"][:-1] == base_layers and len(artifact["layers"]) == len(base_layers) + 1
    assert artifact["config_digest"] and artifact["manifest_digest"] and artifact["image_id"] == artifact["manifest_digest"]
    assert artifact["format"] == ("oci-archive" if export == "docker" else "oci-layout")
    from airflow_provider_artiload.hooks.engine import DockerEngineHook

    monkeypatch.setenv("AIRFLOW_CONN_EXP_ENGINE", json.dumps({"conn_type": "docker_engine", "host": engine.unix_url}))
    outcome = DockerEngineHook("exp_engine").load_archive(DockerArchive.from_xcom(artifact), tags=[f"exp/{export}:loaded"])
    assert outcome.image_id == artifact["manifest_digest"]
    assert _run(engine, f"exp/{export}:loaded", "cat /exported-by") == f"{export}\n"


def test_tar_export_streams_the_root_filesystem_to_a_file(monkeypatch, engine, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {BASE}\nRUN echo exported > /marker && chmod 4711 /marker\n")
    out = tmp_path / "rootfs.tar"
    artifact = BuildArtifactOperator(
        task_id="tar", context=str(ctx), export="tar", output=str(out), buildkit_conn_id=_connect(monkeypatch, engine)
    ).execute({})
    assert artifact["kind"] == "tar" and artifact["path"] == str(out) and artifact["size"] == out.stat().st_size
    with tarfile.open(out) as tar:
        marker = tar.getmember("marker")
        assert tar.extractfile(marker).read() == b"exported\n"
        assert stat.S_IMODE(marker.mode) == 0o4711
        assert "bin/busybox" in tar.getnames()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ctx", "rootfs.tar"]


def test_tar_export_to_an_unusable_directory_fails_before_building(monkeypatch, engine, tmp_path):
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\n")
    (tmp_path / "a-file").write_text("in the way of the output directory")
    with pytest.raises(DestinationError, match="cannot create .*a-file: File exists"):
        BuildKitHook(_connect(monkeypatch, engine)).build(
            context=str(tmp_path), export="tar", output=str(tmp_path / "a-file" / "out.tar")
        )


def test_session_through_control_session_stream(engine, tmp_path):
    """The path used for standalone buildkitd: the session inside Control.Session (no /session hijack)."""
    from airflow_provider_artiload.endpoints import parse_endpoint
    from airflow_provider_artiload.engine.client import EngineClient
    from airflow_provider_artiload.transport import open_dialer

    (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\nCOPY f /f\n")
    (tmp_path / "f").write_text(f"{time.time()}\n")
    engine_client = EngineClient(open_dialer(parse_endpoint(engine.unix_url, kind="engine")))
    client = BuildKitClient(lambda: engine_client.open_upgraded("/grpc"), where=engine.unix_url)
    try:
        result = client.solve(BuildRequest(context=str(tmp_path), image="artiload-build/ctl:1", network="none"))
    finally:
        client.close()
    assert result.image_id and result.context_bytes > 0
    assert _run(engine, result.image_id, "cat /f") == (tmp_path / "f").read_text()


def test_on_kill_cancels_a_running_build(monkeypatch, engine, tmp_path):
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\nRUN echo started-{time.time()} && sleep 60\n")
    op = BuildArtifactOperator(
        task_id="cancel", context=str(tmp_path), image="artiload-build/cancel:1", buildkit_conn_id=_connect(monkeypatch, engine)
    )
    outcome: dict[str, BaseException | object] = {}

    def run() -> None:
        try:
            outcome["result"] = op.execute({})
        except BaseException as exc:  # noqa: BLE001
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(4)  # the RUN step is sleeping by now
    assert thread.is_alive()
    killed = time.monotonic()
    op.on_kill()
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert time.monotonic() - killed < 10
    assert isinstance(outcome.get("error"), BuildError) and "cancelled" in str(outcome["error"])
    client = docker.DockerClient(base_url=engine.unix_url, version="auto")
    try:
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get("artiload-build/cancel:1")
    finally:
        client.close()


def test_unreachable_engine_is_a_connect_error(monkeypatch, tmp_path):
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\n")
    monkeypatch.setenv("AIRFLOW_CONN_DEAD", json.dumps({"conn_type": "buildkit", "host": f"docker://unix://{tmp_path}/none.sock"}))
    with pytest.raises(ConnectError, match="none.sock does not exist"):
        BuildKitHook("dead").build(context=str(tmp_path), image="x/y:1")


def test_context_outside_the_allowed_roots_is_refused_before_connecting(monkeypatch, tmp_path):
    allowed, elsewhere = tmp_path / "allowed", tmp_path / "elsewhere"
    for directory in (allowed, elsewhere):
        directory.mkdir()
        (directory / "Dockerfile").write_text(f"FROM {BASE}\n")
    (allowed / "escape").symlink_to(elsewhere)  # a symlink out of the root does not count as inside
    conn = {"conn_type": "buildkit", "host": "docker://unix:///nonexistent.sock", "extra": {"context_roots": str(allowed)}}
    monkeypatch.setenv("AIRFLOW_CONN_BK_ROOTS", json.dumps(conn))
    for context in (elsewhere, allowed / "escape"):
        with pytest.raises(BuildError, match="outside the allowed roots"):
            BuildKitHook("bk_roots").build(context=str(context), image="roots/test:1")


def test_unknown_build_target_names_the_stage(monkeypatch, engine, tmp_path):
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE} AS base\nRUN true\n")
    with pytest.raises(BuildError, match="nosuchstage"):
        BuildKitHook(_connect(monkeypatch, engine)).build(context=str(tmp_path), image="target/test:1", target="nosuchstage")
