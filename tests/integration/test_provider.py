"""Provider registration as Airflow sees it: the CLI, the connection forms, `airflow connections test`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_artiload.compat import AIRFLOW_V_3_2_PLUS

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def airflow(*args: str, env: dict[str, str] | None = None) -> str:
    quiet = {"AIRFLOW__CORE__UNIT_TEST_MODE": "False"}  # unit-test mode logs to stdout, which -o json also uses
    done = subprocess.run(
        [AIRFLOW, *args], capture_output=True, text=True, timeout=300, env={**os.environ, **quiet, **(env or {})}
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def airflow_json(*args: str) -> list:
    out = airflow(*args, "-o", "json")
    return json.loads(out[out.index("[") :])


def test_providers_get_lists_the_connection_types_with_their_forms():
    [info] = airflow_json("providers", "get", "airflow-provider-artiload", "--full")
    types = {c["connection-type"]: c for c in info["connection-types"]}
    assert set(types) == {"docker_engine", "buildkit", "containerd"}
    assert {"namespace", "snapshotter", "platform", "key_file", "host_key"} <= set(types["containerd"]["conn-fields"])
    engine_fields = types["docker_engine"]["conn-fields"]
    for extra in ("tls_ca_cert", "tls_verify", "ssh_conn_id", "key_file", "private_key", "host_key", "no_host_key_check"):
        assert extra in engine_fields, extra
    assert engine_fields["private_key"]["schema"]["format"] == "password"  # masked in the UI
    assert "engine_conn_id" in types["buildkit"]["conn-fields"]
    assert types["docker_engine"]["ui-field-behaviour"]["relabeling"]["host"] == "Endpoint URL"


def test_both_hooks_import_and_register():
    hooks = {h["connection_type"]: h for h in airflow_json("providers", "hooks")}
    assert hooks["docker_engine"]["class"] == "airflow_provider_artiload.hooks.engine.DockerEngineHook"
    assert hooks["buildkit"]["class"] == "airflow_provider_artiload.hooks.buildkit.BuildKitHook"
    assert hooks["containerd"]["class"] == "airflow_provider_artiload.hooks.containerd.ContainerdHook"


@pytest.mark.skipif(not AIRFLOW_V_3_2_PLUS, reason="Airflow 3.1 reads no declarative conn-fields (docs/connections.md)")
def test_connection_forms_for_the_ui():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    behaviour = manager.field_behaviours["docker_engine"]
    assert behaviour["hidden_fields"] == ["schema"]
    assert behaviour["placeholders"]["host"].startswith("unix:///var/run/docker.sock")
    widgets = manager.connection_form_widgets
    no_check = widgets["extra__docker_engine__no_host_key_check"].field["schema"]
    assert "default" not in no_check  # unset stays unset: the hook's own default (verify host keys) applies
    assert widgets["extra__buildkit__engine_conn_id"].field["schema"]["title"] == "Engine connection id"


def test_airflow_connections_test_works_for_both_types(engine):
    env = {
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "AIRFLOW_CONN_PROBE_ENGINE": json.dumps({"conn_type": "docker_engine", "host": engine.unix_url}),
        "AIRFLOW_CONN_PROBE_BUILDKIT": json.dumps(
            {"conn_type": "buildkit", "host": "docker://", "extra": {"engine_conn_id": "probe_engine"}}
        ),
        "AIRFLOW_CONN_PROBE_GONE": json.dumps({"conn_type": "docker_engine", "host": "unix:///nonexistent/docker.sock"}),
    }
    assert "Connection success!" in airflow("connections", "test", "probe_engine", env=env)
    assert "Connection success!" in airflow("connections", "test", "probe_buildkit", env=env)
    failed = subprocess.run([AIRFLOW, "connections", "test", "probe_gone"], capture_output=True, text=True, env={**os.environ, **env})
    assert "socket /nonexistent/docker.sock does not exist" in failed.stdout + failed.stderr
