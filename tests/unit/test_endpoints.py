"""Endpoint URLs and extras: parsed strictly, errors quote the value and show an example."""

from __future__ import annotations

import pytest

from airflow_provider_artiload.endpoints import default_engine_url, parse_endpoint
from airflow_provider_artiload.exceptions import EndpointError


@pytest.mark.parametrize(
    ("url", "kind", "extras", "expected"),
    [
        ("unix:///var/run/docker.sock", "engine", {}, "unix:///var/run/docker.sock"),
        ("tcp://10.0.0.5:2376", "engine", {}, "tcp://10.0.0.5:2376"),
        ("tcp://engine.example", "engine", {}, "tcp://engine.example:2376"),
        ("tcp://engine.example", "engine", {"tls": "false"}, "tcp://engine.example:2375"),
        ("ssh://deploy@build-1", "engine", {}, "ssh://deploy@build-1:22/var/run/docker.sock"),
        ("ssh://deploy@build-1:2222", "buildkit", {}, "ssh://deploy@build-1:2222/run/buildkit/buildkitd.sock"),
        ("ssh://deploy@[::1]:2222/run/user/1000/docker.sock", "engine", {}, "ssh://deploy@[::1]:2222/run/user/1000/docker.sock"),
        ("ssh://h", "engine", {"socket_path": "/srv/d.sock"}, "ssh://h:22/srv/d.sock"),
        ("docker://unix:///var/run/docker.sock", "buildkit", {}, "docker://unix:///var/run/docker.sock"),
        ("docker://ssh://u@h", "buildkit", {}, "docker://ssh://u@h:22/var/run/docker.sock"),
        ("docker://", "buildkit", {}, "docker://"),
    ],
)
def test_valid_endpoints(url, kind, extras, expected):
    assert parse_endpoint(url, kind=kind, extras=extras).url == expected


@pytest.mark.parametrize(
    ("url", "kind", "why"),
    [
        ("", "engine", "empty engine endpoint"),
        ("/var/run/docker.sock", "engine", "missing scheme"),
        ("unix://var/run/docker.sock", "engine", "must be absolute"),
        ("npipe:////./pipe/docker_engine", "engine", "unknown scheme 'npipe'"),
        ("http://host:2375", "engine", "unknown scheme 'http'"),
        ("tcp://host:notaport", "engine", "port must be a number"),
        ("tcp://host:70000", "engine", "port must be a number"),
        ("tcp://:2376", "engine", "missing host"),
        ("tcp://host:2376/path", "engine", "only host and port"),
        ("ssh://user:pw@host", "engine", "password field"),
        ("ssh://", "engine", "missing host"),
        ("docker://unix:///x.sock", "engine", "BuildKit inside an engine"),
        ("docker://ftp://x", "buildkit", "unknown scheme 'ftp'"),
    ],
)
def test_invalid_endpoints_quote_value_and_show_example(url, kind, why):
    with pytest.raises(EndpointError) as info:
        parse_endpoint(url, kind=kind)
    message = str(info.value)
    if why:
        assert why in message
    assert "expected e.g." in message
    if url:
        shown = url.replace(":pw@", ":***@")  # a password in a URL is never repeated
        assert repr(shown) in message or repr(shown.removeprefix("docker://")) in message
        assert ":pw@" not in message


@pytest.mark.parametrize(
    ("extras", "needle"),
    [
        ({"tls_verify": "ture"}, "'tls_verify' must be true or false, got 'ture'"),
        ({"tls": "false", "tls_ca_cert": "/ca.pem"}, "TLS extras are set: tls_ca_cert"),
    ],
)
def test_bad_tls_extras(extras, needle):
    with pytest.raises(EndpointError, match=needle):
        parse_endpoint("tcp://h:2376", kind="engine", extras=extras)


@pytest.mark.parametrize(
    ("extras", "needle"),
    [
        ({"no_host_key_check": "maybe"}, "'no_host_key_check' must be true or false, got 'maybe'"),
        ({"conn_timeout": "soon"}, "'conn_timeout' must be a number"),
        ({"conn_timeout": "-1"}, "'conn_timeout' must be positive"),
        ({"disabled_algorithms": "[1"}, "not valid JSON"),
        ({"socket_path": "docker.sock"}, "must be absolute"),
    ],
)
def test_bad_ssh_extras(extras, needle):
    with pytest.raises(EndpointError, match=needle):
        parse_endpoint("ssh://u@h", kind="engine", extras=extras)


def test_tls_on_and_verified_by_default():
    tls = parse_endpoint("tcp://h:2376", kind="engine").tls
    assert tls is not None and tls.verify is True


def test_ssh_extras_use_the_ssh_provider_names():
    ssh = parse_endpoint(
        "ssh://u@h",
        kind="engine",
        extras={
            "key_file": "~/.ssh/id_ed25519",
            "private_key_passphrase": "pp",
            "host_key": "ssh-ed25519 AAAA",
            "no_host_key_check": "false",
            "ciphers": "aes256-gcm@openssh.com, aes128-ctr",
            "conn_timeout": "7",
            "disabled_algorithms": '{"pubkeys": ["rsa-sha2-512"]}',
            "compress": True,
        },
    ).ssh
    assert ssh.key_file == "~/.ssh/id_ed25519"
    assert ssh.no_host_key_check is False
    assert ssh.ciphers == ("aes256-gcm@openssh.com", "aes128-ctr")
    assert ssh.conn_timeout == 7.0
    assert ssh.disabled_algorithms == {"pubkeys": ["rsa-sha2-512"]}
    assert ssh.compress is True


def test_secrets_stay_out_of_repr_and_url():
    endpoint = parse_endpoint(
        "ssh://u@h",
        kind="engine",
        extras={"private_key": "-----BEGIN OPENSSH PRIVATE KEY----- SECRETKEY", "private_key_passphrase": "PASSPHRASE"},
    )
    shown = repr(endpoint) + str(endpoint)
    assert "SECRETKEY" not in shown and "PASSPHRASE" not in shown


@pytest.mark.parametrize(
    ("environ", "url", "extras"),
    [
        ({}, "unix:///var/run/docker.sock", {}),
        ({"DOCKER_HOST": "unix:///run/user/1000/docker.sock"}, "unix:///run/user/1000/docker.sock", {}),
        ({"DOCKER_HOST": "tcp://h:2375"}, "tcp://h:2375", {"tls": False}),
        (
            {"DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/certs"},
            "tcp://h:2376",
            {
                "tls": True,
                "tls_verify": True,
                "tls_ca_cert": "/certs/ca.pem",
                "tls_client_cert": "/certs/cert.pem",
                "tls_client_key": "/certs/key.pem",
            },
        ),
    ],
)
def test_default_engine_follows_the_docker_cli(environ, url, extras):
    assert default_engine_url(environ) == (url, extras)
