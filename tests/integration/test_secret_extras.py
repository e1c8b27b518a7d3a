"""No secret extra of any artiload connection type is shown by a real ``airflow api-server`` (issue 16).

``tls_client_key`` matches none of Airflow's sensitive words, so the REST API
and the UI showed an inline client key in clear. Each connection type is
created with every secret extra set (an inline client key, an SSH private
key and its passphrase, the password), then read back through the REST API
(one connection, the list) and through the UI's test-connection path (which
runs the hook in the API server); no secret may appear in any answer.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.integration.test_ui_forms import api_server

CLIENT_KEY = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCtlsclientkey0001\n-----END PRIVATE KEY-----\n"
SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQsshprivatekey0002\n-----END OPENSSH PRIVATE KEY-----\n"
PASSPHRASE = "passphrase-that-must-not-show-0003"
PASSWORD = "password-that-must-not-show-0004"
SECRETS = (CLIENT_KEY, SSH_KEY, PASSPHRASE, PASSWORD)
PIECES = [line for secret in SECRETS for line in secret.splitlines() if not line.startswith("-----")]

CONNECTIONS = {
    "docker_engine": ("tcp://127.0.0.1:1", {"tls_client_cert": "/nonexistent/cert.pem", "tls_client_key": CLIENT_KEY}),
    "docker_engine_ssh": ("ssh://user@127.0.0.1:1", {"private_key": SSH_KEY, "private_key_passphrase": PASSPHRASE}),
    "buildkit": ("tcp://127.0.0.1:1", {"tls_client_cert": "/nonexistent/cert.pem", "tls_client_key": CLIENT_KEY}),
    "buildkit_ssh": ("ssh://user@127.0.0.1:1", {"private_key": SSH_KEY, "private_key_passphrase": PASSPHRASE}),
    "containerd": ("ssh://user@127.0.0.1:1/run/containerd/containerd.sock",
                   {"private_key": SSH_KEY, "private_key_passphrase": PASSPHRASE}),
}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """A real api-server (SQLite, SimpleAuthManager, test connection enabled) and an admin token."""
    home = tmp_path_factory.mktemp("secrets-airflow")
    with api_server(home, secret="secrets-test", AIRFLOW__CORE__TEST_CONNECTION="Enabled") as (base, token):
        yield base, token


def _text(url: str, token: str, data: dict | None = None) -> str:
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json",
                                                              "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.read().decode()
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}: {exc.read().decode()}"


def _leaks(text: str) -> list[str]:
    return [piece for piece in PIECES if piece in text]


@pytest.mark.parametrize("conn_id", list(CONNECTIONS))
def test_no_secret_extra_is_shown_by_the_rest_api_or_the_test_connection_path(api, conn_id):
    base, token = api
    host, extras = CONNECTIONS[conn_id]
    body = {"connection_id": f"secret_{conn_id}", "conn_type": conn_id.removesuffix("_ssh"), "host": host,
            "login": "user", "password": PASSWORD, "extra": json.dumps(extras)}
    created = _text(f"{base}/api/v2/connections", token, body)
    assert not created.startswith("HTTP "), created
    answers = {
        "create": created,
        "get": _text(f"{base}/api/v2/connections/secret_{conn_id}", token),
        "list": _text(f"{base}/api/v2/connections", token),
        "test": _text(f"{base}/api/v2/connections/test", token, body),
        "test stored": _text(f"{base}/api/v2/connections/test", token, {k: body[k] for k in ("connection_id", "conn_type")}),
    }
    shown = json.loads(json.loads(answers["get"])["extra"])
    assert all(shown[name] == "***" for name in extras if name != "tls_client_cert"), shown  # masked, not dropped
    leaked = {where: _leaks(text) for where, text in answers.items() if _leaks(text)}
    assert not leaked, {where: answers[where][:2000] for where in leaked}
    print(f"{conn_id}: test connection answered {answers['test'][:200]}")
