"""BuildKitHook: lazy, endpoint resolution from connections, secret sources (no daemon needed)."""

from __future__ import annotations

import json

import pytest

from airflow_provider_artiload.exceptions import BuildError, EndpointError
from airflow_provider_artiload.hooks.buildkit import BuildKitHook
from airflow_provider_artiload.operators.build import BuildArtifactOperator


def conn(monkeypatch, conn_id: str, conn_type: str, host: str, **extra) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": conn_type, "host": host, "extra": extra}))


def test_nothing_connects_in_init_and_defaults_follow_docker_host(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_BUILDKIT_DEFAULT", raising=False)
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/some/docker.sock")
    hook = BuildKitHook()
    assert "client" not in hook.__dict__ and "endpoint" not in hook.__dict__
    assert hook.endpoint.url == "docker://unix:///tmp/some/docker.sock"


def test_engine_conn_id_names_the_engine(monkeypatch):
    conn(monkeypatch, "eng", "docker_engine", "tcp://127.0.0.1:2376", tls_verify="false")
    conn(monkeypatch, "bk", "buildkit", "docker://", engine_conn_id="eng", network="none")
    hook = BuildKitHook("bk")
    assert hook.endpoint.scheme == "docker" and hook.endpoint.engine.url == "tcp://127.0.0.1:2376"
    assert hook.endpoint.engine.tls is not None and hook.network == "none"
    conn(monkeypatch, "both", "buildkit", "docker://unix:///x.sock", engine_conn_id="eng")
    with pytest.raises(EndpointError, match="not both"):
        BuildKitHook("both").endpoint  # noqa: B018


def test_docker_scheme_without_engine_uses_the_default_engine(monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    conn(monkeypatch, "bare", "buildkit", "docker://")
    assert BuildKitHook("bare").endpoint.engine.url == "unix:///var/run/docker.sock"


def test_standalone_buildkitd_endpoint(monkeypatch):
    conn(monkeypatch, "standalone", "buildkit", "unix:///run/buildkit/buildkitd.sock")
    assert BuildKitHook("standalone").endpoint.url == "unix:///run/buildkit/buildkitd.sock"


def test_bad_network_extra_is_an_error(monkeypatch):
    conn(monkeypatch, "badnet", "buildkit", "docker://", network="bridged")
    with pytest.raises(EndpointError, match="'network' must be default, none or host, got 'bridged'"):
        BuildKitHook("badnet").network  # noqa: B018


def test_secret_sources(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_NPM", json.dumps({"conn_type": "generic", "password": "conn-pass"}))
    monkeypatch.setenv("MY_TOKEN", "env-value")
    (tmp_path / "s").write_bytes(b"file-value")
    hook = BuildKitHook()
    assert hook.resolve_secrets(
        {"a": {"conn_id": "npm"}, "b": {"env": "MY_TOKEN"}, "c": {"file": str(tmp_path / "s")}}
    ) == {"a": b"conn-pass", "b": b"env-value", "c": b"file-value"}
    with pytest.raises(BuildError, match="secret 'x': the source must be one of"):
        hook.resolve_secrets({"x": "plain-string"})
    with pytest.raises(BuildError, match="environment variable 'NOPE' is not set"):
        hook.resolve_secrets({"y": {"env": "NOPE"}})


def test_operator_is_thin_and_templates_the_documented_fields():
    op = BuildArtifactOperator(task_id="t", context="/ctx", export="tar", output="/out/x.tar", secrets={"s": {"env": "E"}})
    assert set(op.template_fields) == {
        "context", "dockerfile", "image", "output_path", "build_args", "labels", "target", "cache_from", "cache_to",
        "platforms",
    }
    assert op.output_path == "/out/x.tar" and "hook" not in op.__dict__
    assert "secrets" not in op.template_fields
