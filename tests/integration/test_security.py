"""Security defaults, against the real sshd and engine: host keys and TLS verified, secrets kept out of
logs, XCom, exception messages and reprs, and tarballs written owner-only."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import pytest

from airflow_provider_artiload.exceptions import EndpointError, HostKeyError, SSHAuthError, TLSError
from airflow_provider_artiload.operators import DockerLoadOperator, SaveImageOperator
from tests.integration.test_engine_transfer import BASE, connect, drop
from tests.integration.test_faults import Relay

PASSWORD = "PW-s3cr3t-4711"
WRONG_PASSPHRASE = "not-the-passphrase-9931"


def ssh_host(sshd, socket_path: str, user: str = "root") -> str:
    return f"ssh://{user}@127.0.0.1:{sshd.port}{socket_path}"


# --- host keys --------------------------------------------------------------------------------------------------


def test_host_keys_are_verified_by_default(monkeypatch, engine, sshd, tmp_path):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)  # an empty ~/.ssh: nothing known
    monkeypatch.setenv("HOME", str(home))
    hook = connect(monkeypatch, "hk_default", ssh_host(sshd, engine.socket_path), key_file=sshd.client_key, look_for_keys="false")
    assert hook.endpoint.ssh.no_host_key_check is False
    with pytest.raises(HostKeyError, match=r"host key of \S+ is unknown \(ssh-\S+ .*opt out with no_host_key_check"):
        hook.client.ping()
    assert os.listdir(home / ".ssh") == [], "an unknown host key was written to known_hosts"


@pytest.mark.parametrize(("extra", "flag"), [({"no_host_key_check": "true"}, "no_host_key_check"),
                                             ({"allow_host_key_change": "true", "known_hosts": "OTHER"}, "allow_host_key_change")])
def test_turning_host_key_checks_off_is_explicit_and_warns(monkeypatch, engine, sshd, tmp_path, caplog, capsys, extra, flag):
    monkeypatch.setenv("HOME", str(tmp_path))
    extra = {k: (sshd.other_known_hosts if v == "OTHER" else v) for k, v in extra.items()}
    host = ssh_host(sshd, engine.socket_path)
    hook = connect(monkeypatch, "hk_off", host, key_file=sshd.client_key, look_for_keys="false", **extra)
    with caplog.at_level(logging.WARNING):
        assert hook.client.ping() == "OK"
    logged = caplog.text + capsys.readouterr().out
    assert f"{host}: host key NOT verified (the connection sets {flag})" in logged, logged


# --- TLS --------------------------------------------------------------------------------------------------------


def test_tls_is_on_and_verified_by_default(monkeypatch, engine, tls_material):
    bare = connect(monkeypatch, "tls_bare", engine.tcp_url)  # no extras at all
    assert bare.endpoint.tls is not None and bare.endpoint.tls.verify is True
    with pytest.raises(TLSError, match=rf"TLS verification failed for {engine.tcp_url}: .*(self.signed|unable to get local issuer)"):
        bare.client.ping()
    certs = {"tls_ca_cert": tls_material.ca_cert, "tls_client_cert": tls_material.client_cert, "tls_client_key": tls_material.client_key}
    wrong_name = connect(monkeypatch, "tls_name", engine.tcp_url, tls_hostname="not-this-host.example", **certs)
    with pytest.raises(TLSError, match=r"TLS verification failed for .*[Hh]ostname mismatch"):
        wrong_name.client.ping()
    assert connect(monkeypatch, "tls_ok", engine.tcp_url, **certs).client.ping() == "OK"
    opted_out = {**certs, "tls_verify": "false"}
    del opted_out["tls_ca_cert"]
    assert connect(monkeypatch, "tls_off", engine.tcp_url, tls_hostname="not-this-host.example", **opted_out).client.ping() == "OK"


# --- secrets ----------------------------------------------------------------------------------------------------


def _key_body(text: str) -> list[str]:
    """Distinctive pieces of a private key: its base64 body lines."""
    return [line for line in text.splitlines() if line and not line.startswith("-----")]


def _chain(exc: BaseException) -> list[str]:
    seen, texts = set(), []
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        texts += [str(exc), repr(exc)]
        exc = exc.__cause__ or exc.__context__
    return texts


def _assert_no_secret(texts, secrets) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"secret {secret[:12]}... appears in: {text[:300]}"


def test_secrets_stay_out_of_logs_xcom_and_reprs(monkeypatch, engine, engine_b, sshd, tmp_path, caplog, capsys):
    key_text = Path(sshd.client_key_protected).read_text()
    secrets = [PASSWORD, sshd.protected_passphrase, *_key_body(key_text)]
    for conn_id, eng in (("sec_src", engine), ("sec_dst", engine_b)):
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({
            "conn_type": "docker_engine", "host": ssh_host(sshd, eng.socket_path), "password": PASSWORD,
            "extra": {"private_key": key_text, "private_key_passphrase": sshd.protected_passphrase,
                      "known_hosts": sshd.known_hosts, "look_for_keys": "false"},
        }))
    caplog.set_level(logging.DEBUG)
    save = SaveImageOperator(task_id="save", image=BASE, path=str(tmp_path / "base.tar"), engine_conn_id="sec_src")
    artifact = save.execute({})
    drop(engine_b, artifact["image_id"])
    load = DockerLoadOperator(task_id="load", source=artifact, tag="sec/loaded:1", engine_conn_id="sec_dst")
    result = load.execute({})
    assert result["image_id"] == artifact["image_id"]
    assert load.hooks[0].endpoint.ssh.password == PASSWORD  # it was really there to leak
    captured = capsys.readouterr()
    hook = load.hooks[0]
    _assert_no_secret(
        [captured.out, captured.err, caplog.text, json.dumps(artifact), json.dumps(result), repr(hook), repr(hook.endpoint),
         str(hook.endpoint), hook.endpoint.url, repr(hook.endpoint.ssh), repr(save.hook.endpoint), repr(load.__dict__.get("hooks"))],
        secrets,
    )


def _inline_failures(sshd, engine) -> list[tuple[str, str, dict, str | None]]:
    key_text = Path(sshd.client_key_protected).read_text()
    fake_key = "-----BEGIN OPENSSH PRIVATE KEY-----\nFAKEKEYBODYdoNotLeakThisLine0123456789abcdefABCDEF\n-----END OPENSSH PRIVATE KEY-----\n"
    sock = engine.socket_path
    return [
        # (case, host field, extras, password field)
        ("wrong passphrase", ssh_host(sshd, sock), {"private_key": key_text, "private_key_passphrase": WRONG_PASSPHRASE}, None),
        ("passphrase missing", ssh_host(sshd, sock), {"private_key": key_text}, None),
        ("not a key", ssh_host(sshd, sock), {"private_key": fake_key, "private_key_passphrase": WRONG_PASSPHRASE}, None),
        ("password refused", ssh_host(sshd, sock), {}, PASSWORD),
        ("password in an ssh URL", f"ssh://root:{PASSWORD}@127.0.0.1:{sshd.port}{sock}", {}, None),
        ("password in a tcp URL", f"tcp://root:{PASSWORD}@127.0.0.1:2376", {}, None),
    ]


CASES = ["wrong passphrase", "passphrase missing", "not a key", "password refused", "password in an ssh URL", "password in a tcp URL"]


@pytest.mark.parametrize("case", CASES)
def test_secrets_stay_out_of_error_messages(monkeypatch, engine, sshd, tmp_path, caplog, capsys, case):
    _, host, extra, password = next(c for c in _inline_failures(sshd, engine) if c[0] == case)
    monkeypatch.setenv("HOME", str(tmp_path))
    conn = {"conn_type": "docker_engine", "host": host, "password": password,
            "extra": {"known_hosts": sshd.known_hosts, "look_for_keys": "false", **extra}}
    monkeypatch.setenv("AIRFLOW_CONN_SEC_BAD", json.dumps(conn))
    secrets = [PASSWORD, WRONG_PASSPHRASE, "FAKEKEYBODYdoNotLeakThisLine", *_key_body(Path(sshd.client_key_protected).read_text())]
    op = SaveImageOperator(task_id="save", image=BASE, path=str(tmp_path / "x.tar"), engine_conn_id="sec_bad")
    caplog.set_level(logging.DEBUG)
    with pytest.raises((SSHAuthError, EndpointError)) as failure:
        op.execute({})
    captured = capsys.readouterr()
    _assert_no_secret([*_chain(failure.value), captured.out, captured.err, caplog.text], secrets)
    assert not (tmp_path / "x.tar").exists()


def test_inline_tls_key_errors_leak_nothing_and_leave_no_file(monkeypatch, engine, tls_material):
    """A client key that does not match its certificate, given inline: the error names the endpoint, not the key."""
    other_key = Path(tls_material.server_key).read_text()
    before = set(os.listdir(tempfile.gettempdir()))
    hook = connect(monkeypatch, "tls_inline", engine.tcp_url, tls_ca_cert=tls_material.ca_cert,
                   tls_client_cert=tls_material.client_cert, tls_client_key=other_key)
    with pytest.raises(TLSError, match=rf"{engine.tcp_url}: cannot load TLS certificates") as failure:
        hook.client.ping()
    _assert_no_secret([*_chain(failure.value), repr(hook.endpoint)], _key_body(other_key))
    assert not [n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("artiload-tls-")]


# --- file permissions -------------------------------------------------------------------------------------------


def test_tarballs_are_owner_only_whatever_the_umask_or_the_old_file(monkeypatch, engine, sshd, tmp_path):
    hook = connect(monkeypatch, "perm_src", engine.unix_url)
    old_umask = os.umask(0)
    try:
        hook.save_image(BASE, str(tmp_path / "umask0.tar"))
        existing = tmp_path / "existing.tar"
        existing.write_bytes(b"old")
        existing.chmod(0o644)
        hook.save_image(BASE, str(existing))
        over_ssh = connect(monkeypatch, "perm_ssh", ssh_host(sshd, engine.socket_path), key_file=sshd.client_key,
                           known_hosts=sshd.known_hosts, look_for_keys="false")
        over_ssh.save_image(BASE, str(tmp_path / "ssh.tar"))
    finally:
        os.umask(old_umask)
    for name in ("umask0.tar", "existing.tar", "ssh.tar"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name


def test_the_temp_file_is_owner_only_while_it_is_written(monkeypatch, engine, tmp_path):
    slow = str(tmp_path / "slow.sock")
    out = tmp_path / "out"
    out.mkdir()
    modes: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for temp in out.glob(".base.tar.artiload-*.partial"):
                try:
                    modes.append(temp.stat().st_mode & 0o777)
                except FileNotFoundError:
                    pass
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    with Relay(engine.socket_path, listen_unix=slow, rate=4 << 20):  # about half a second of writing
        old_umask = os.umask(0)
        watcher.start()
        try:
            connect(monkeypatch, "perm_slow", f"unix://{slow}").save_image(BASE, str(out / "base.tar"))
        finally:
            os.umask(old_umask)
            stop.set()
            watcher.join()
    assert modes and set(modes) == {0o600}, modes
    assert os.listdir(out) == ["base.tar"]
