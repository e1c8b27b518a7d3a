"""Both connection forms, filled in a real browser: headless Debian chromium driven by playwright-core
(tests/integration/ui/, installed by scripts/setup_ui.sh) against a real ``airflow api-server``.

The form saves every declared field; what we check is that untouched fields are saved as null (unset),
that the values a user picked are the only ones set, and that the hooks accept what the UI saved.
Screenshots of both forms go to docs/images/.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from airflow_provider_artiload.endpoints import parse_float
from airflow_provider_artiload.hooks.connection import endpoint_from_connection, set_extras

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "tests" / "integration" / "ui"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
CHROMIUM = "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, *, data: dict | None = None, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps(data).encode() if data is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=10) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def api_server(home: Path, *, secret: str, **settings: str) -> Iterator[tuple[str, str]]:
    """A real ``airflow api-server`` on SQLite (SimpleAuthManager) in ``home``: its base URL and an admin token.

    ``settings`` are more ``AIRFLOW__...`` variables; ``secret`` makes the JWT and API secrets of this server.
    """
    port = _free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__API_AUTH__JWT_SECRET": f"{secret}-jwt-secret",
        "AIRFLOW__API__SECRET_KEY": f"{secret}-secret-key",
        **settings,
    }
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    log = open(home / "api-server.log", "wb")
    server = subprocess.Popen([AIRFLOW, "api-server", "--host", "127.0.0.1", "-p", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                _request(base + "/api/v2/monitor/health")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"api-server did not come up:\n{(home / 'api-server.log').read_text()[-3000:]}")
                time.sleep(1)
        password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        token = _request(base + "/auth/token", data={"username": "admin", "password": password})["access_token"]
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """A real api-server (SQLite, SimpleAuthManager) and a token for the admin user."""
    missing = [what for what, ok in (
        (CHROMIUM, os.access(CHROMIUM, os.X_OK)),
        ("node", shutil.which("node")),
        (str(UI / "node_modules" / "playwright-core"), (UI / "node_modules" / "playwright-core").is_dir()),
    ) if not ok]
    if missing:
        pytest.fail(f"the browser test needs {', '.join(missing)}: run scripts/setup_ui.sh", pytrace=False)
    with api_server(tmp_path_factory.mktemp("ui-airflow"), secret="ui-test") as (base, token):
        yield SimpleNamespace(base=base, token=token)


def fill_and_save(ui, **spec) -> dict:
    """Run the browser; return the connection as the REST API reads it back."""
    spec = {"base": ui.base, "token": ui.token, **spec}
    result = subprocess.run(["node", str(UI / "fill_form.js"), json.dumps(spec)], cwd=UI,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["status"] == 201
    return _request(f"{ui.base}/api/v2/connections/{spec['conn_id']}", token=ui.token)


def as_connection(saved: dict) -> SimpleNamespace:
    return SimpleNamespace(conn_id=saved["connection_id"], host=saved["host"], port=saved["port"],
                           login=saved["login"], password=saved["password"], extra_dejson=json.loads(saved["extra"]))


def _no_other_connection(conn_id):
    raise AssertionError(f"unexpected lookup of {conn_id}")


def test_engine_form_with_tls_off_saves_only_what_was_set(ui):
    saved = fill_and_save(
        ui, type="Docker Engine (artiload)", conn_id="ui_engine", host="tcp://build-1:2375",
        choices={"tls": "off"}, texts={"transfer_timeout": "900"},
        screenshot=str(ROOT / "docs" / "images" / "connection-docker-engine.png"),
    )
    extras = json.loads(saved["extra"])
    assert saved["conn_type"] == "docker_engine"
    assert {k: v for k, v in extras.items() if v is not None} == {"tls": "false", "transfer_timeout": 900}
    assert set_extras(as_connection(saved)) == {"tls": "false", "transfer_timeout": 900}
    endpoint = endpoint_from_connection(as_connection(saved), kind="engine", get_connection=_no_other_connection)
    assert (endpoint.scheme, endpoint.tls, endpoint.port) == ("tcp", None, 2375)  # TLS off, no TLS extra in the way


def test_buildkit_form_with_an_ssh_field_saves_only_what_was_set(ui):
    saved = fill_and_save(
        ui, type="BuildKit (artiload)", conn_id="ui_buildkit", host="ssh://deploy@bk-1",
        choices={"network": "none"}, texts={"key_file": "/keys/id_ed25519", "conn_timeout": "45"},
        screenshot=str(ROOT / "docs" / "images" / "connection-buildkit.png"),
    )
    extras = json.loads(saved["extra"])
    assert saved["conn_type"] == "buildkit"
    assert {k: v for k, v in extras.items() if v is not None} == {
        "network": "none", "key_file": "/keys/id_ed25519", "conn_timeout": 45,
    }
    endpoint = endpoint_from_connection(as_connection(saved), kind="buildkit", get_connection=_no_other_connection)
    assert endpoint.scheme == "ssh" and endpoint.ssh.key_file == "/keys/id_ed25519"
    assert endpoint.ssh.conn_timeout == 45 and endpoint.ssh.look_for_keys is True  # untouched: the default
    assert endpoint.ssh.no_host_key_check is False
    assert parse_float(extras["conn_timeout"], name="conn_timeout", default=30.0) == 45
