"""The harness itself: real engines, TLS and sshd behave as the other integration tests assume."""

from __future__ import annotations

import socket
import ssl
import subprocess
from pathlib import Path

import docker
import paramiko
import pytest

import harness  # scripts/harness.py, put on sys.path by tests/conftest.py


def _client(url: str, **kwargs) -> docker.DockerClient:
    return docker.DockerClient(base_url=url, version="auto", timeout=60, **kwargs)


def test_engine_pings_and_runs_the_base_image(engine: harness.Engine) -> None:
    client = _client(engine.unix_url)
    assert client.ping()  # GET /_ping answered "OK"
    out = client.containers.run(harness.BASE_TAG, ["echo", "hi"], network_mode="none", remove=True)
    assert out == b"hi\n"


def _tls_ping(tcp_url: str, context: ssl.SSLContext) -> bytes:
    """GET /_ping over TLS with plain ssl (docker-py lets REQUESTS_CA_BUNDLE override its CA)."""
    host, port = tcp_url.removeprefix("tcp://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=host) as conn:
            conn.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b"".join(iter(lambda: conn.recv(4096), b""))


def test_tls_listener_needs_a_client_cert(engine: harness.Engine) -> None:
    tls, url = engine.tls, engine.tcp_url
    assert tls is not None and url is not None
    good = ssl.create_default_context(cafile=tls.ca_cert)
    good.load_cert_chain(tls.client_cert, tls.client_key)
    reply = _tls_ping(url, good)
    assert reply.startswith(b"HTTP/1.0 200") and reply.endswith(b"OK")

    no_cert = ssl.create_default_context(cafile=tls.ca_cert)
    with pytest.raises((ssl.SSLError, ConnectionResetError)):  # TLS 1.3: the alert arrives on first read
        _tls_ping(url, no_cert)

    wrong_ca = ssl.create_default_context(cafile=tls.other_ca_cert)
    wrong_ca.load_cert_chain(tls.client_cert, tls.client_key)
    with pytest.raises(ssl.SSLCertVerificationError):
        _tls_ping(url, wrong_ca)


def test_two_engines_run_side_by_side(engine: harness.Engine, engine_b: harness.Engine) -> None:
    assert engine.socket_path != engine_b.socket_path and engine.pid != engine_b.pid
    assert engine_b.tcp_url is None
    a, b = _client(engine.unix_url), _client(engine_b.unix_url)
    assert a.ping() and b.ping()
    assert any(harness.BASE_TAG in img.tags for img in a.images.list())
    assert a.info()["DockerRootDir"] != b.info()["DockerRootDir"]  # separate data roots
    assert a.info()["ID"] != b.info()["ID"]


def test_sshd_accepts_authorized_keys_only(sshd: harness.Sshd) -> None:
    def ssh(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*argv, "true"], capture_output=True, text=True, timeout=30)

    ok = ssh(*sshd.ssh_command())
    assert ok.returncode == 0, ok.stderr
    denied = ssh(*sshd.ssh_command(key=sshd.wrong_key))
    assert denied.returncode == 255 and "Permission denied" in denied.stderr
    changed = ssh(*sshd.ssh_command(known_hosts=sshd.other_known_hosts))
    assert changed.returncode == 255 and "HOST IDENTIFICATION HAS CHANGED" in changed.stderr

    # The RSA PEM key and the passphrase-protected key are authorized too (as paramiko loads them).
    for key in (paramiko.RSAKey.from_private_key_file(sshd.client_key_rsa),
                paramiko.Ed25519Key.from_private_key_file(sshd.client_key_protected,
                                                          password=sshd.protected_passphrase)):
        client = paramiko.SSHClient()
        client.load_host_keys(sshd.known_hosts)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(sshd.host, sshd.port, sshd.user, pkey=key, look_for_keys=False, allow_agent=False)
            server_key = client.get_transport().get_remote_server_key()
            assert f"{server_key.get_name()} {server_key.get_base64()}" in Path(sshd.known_hosts).read_text()
        finally:
            client.close()
