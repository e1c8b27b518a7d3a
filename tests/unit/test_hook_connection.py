"""Airflow connections (URI and JSON forms of AIRFLOW_CONN_*) -> endpoints. No I/O."""

from __future__ import annotations

import json

import pytest

from airflow_provider_artiload.exceptions import EndpointError
from airflow_provider_artiload.hooks.engine import DockerEngineHook


def hook_for(monkeypatch, value: str | dict, conn_id: str = "e") -> DockerEngineHook:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value if isinstance(value, str) else json.dumps(value))
    return DockerEngineHook(conn_id)


def test_hook_does_not_connect_at_construction(monkeypatch):
    hook = hook_for(monkeypatch, {"conn_type": "docker_engine", "host": "unix:///nonexistent.sock"})
    assert "client" not in hook.__dict__


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ({"conn_type": "docker_engine", "host": "unix:///var/run/docker.sock"}, "unix:///var/run/docker.sock"),
        ("docker-engine://unix%3A%2F%2F%2Fvar%2Frun%2Fdocker.sock", "unix:///var/run/docker.sock"),
        ({"conn_type": "docker_engine", "host": "/run/docker.sock"}, "unix:///run/docker.sock"),
        ({"conn_type": "docker_engine", "host": "tcp://10.1.2.3", "port": 2400}, "tcp://10.1.2.3:2400"),
        ({"conn_type": "docker_engine", "host": "10.1.2.3", "port": 2376}, "tcp://10.1.2.3:2376"),
        (
            {"conn_type": "docker_engine", "host": "ssh://build-1", "login": "deploy", "port": 2222},
            "ssh://deploy@build-1:2222/var/run/docker.sock",
        ),
        (
            {"conn_type": "docker_engine", "host": "ssh://ops@build-1:22/srv/docker.sock", "login": "deploy"},
            "ssh://ops@build-1:22/srv/docker.sock",
        ),
    ],
)
def test_connection_forms(monkeypatch, value, url):
    assert hook_for(monkeypatch, value).endpoint.url == url


def test_extras_from_uri_query_are_strings_and_still_parsed(monkeypatch):
    hook = hook_for(monkeypatch, "docker-engine://ssh%3A%2F%2Fdeploy%40h?no_host_key_check=true&conn_timeout=5")
    assert hook.endpoint.ssh.no_host_key_check is True
    assert hook.endpoint.ssh.conn_timeout == 5.0


def test_password_goes_to_ssh_and_never_into_the_url(monkeypatch):
    hook = hook_for(monkeypatch, {"conn_type": "docker_engine", "host": "ssh://deploy@h", "password": "hunter2"})
    assert hook.endpoint.ssh.password == "hunter2"
    assert "hunter2" not in hook.endpoint.url + repr(hook.endpoint)


def test_ssh_conn_id_reuses_an_airflow_ssh_connection(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_BOX",
        json.dumps(
            {
                "conn_type": "ssh",
                "host": "box.internal",
                "login": "ops",
                "port": 2200,
                "extra": {"key_file": "/keys/id", "host_key": "ssh-ed25519 AAAA", "unrelated": 1},
            }
        ),
    )
    hook = hook_for(monkeypatch, {"conn_type": "docker_engine", "extra": {"ssh_conn_id": "box", "socket_path": "/d.sock"}})
    endpoint = hook.endpoint
    assert endpoint.url == "ssh://ops@box.internal:2200/d.sock"
    assert endpoint.ssh.key_file == "/keys/id"
    assert endpoint.ssh.host_key == "ssh-ed25519 AAAA"


def test_bad_extra_names_the_connection_and_the_value(monkeypatch):
    hook = hook_for(monkeypatch, {"conn_type": "docker_engine", "host": "ssh://h", "extra": {"no_host_key_check": "yes please"}})
    with pytest.raises(EndpointError, match="connection 'e': extra 'no_host_key_check' must be true or false, got 'yes please'"):
        hook.endpoint


def test_empty_host_is_an_error_with_an_example(monkeypatch):
    hook = hook_for(monkeypatch, {"conn_type": "docker_engine"})
    with pytest.raises(EndpointError, match="host field is empty.*unix:///var/run/docker.sock"):
        hook.endpoint


def test_no_default_connection_means_docker_host(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_DOCKER_ENGINE_DEFAULT", raising=False)
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/user/1000/docker.sock")
    assert DockerEngineHook().endpoint.url == "unix:///run/user/1000/docker.sock"
