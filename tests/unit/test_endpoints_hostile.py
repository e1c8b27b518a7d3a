"""Hostile and careless connection settings: every refusal is an EndpointError that names the bad
value and the extra, and never repeats a secret; unknown extras warn, unset ones are silent."""

from __future__ import annotations

import base64
import logging
import math
import struct
from types import SimpleNamespace

import paramiko
import pytest

from airflow_provider_artiload.endpoints import (
    EXTRA_PARSERS,
    KNOWN_EXTRAS,
    MAX_SECONDS,
    parse_endpoint,
    parse_extras,
    parse_float,
    redact,
    split_host_key,
)
from airflow_provider_artiload.exceptions import EndpointError
from airflow_provider_artiload.get_provider_info import get_provider_info
from airflow_provider_artiload.transport.ssh import load_host_key

LOGGER = "airflow_provider_artiload.endpoints"


def _blob(key_type: str, body: bytes) -> str:
    def ssh_string(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data

    return base64.b64encode(ssh_string(key_type.encode()) + ssh_string(body)).decode()


ED25519 = _blob("ssh-ed25519", bytes(range(32)))
RSA_KEY = paramiko.RSAKey.generate(1024)
ECDSA_KEY = paramiko.ECDSAKey.generate()


def raises_endpoint_error(url, *, kind="engine", extras=None) -> str:
    """Parse and return the message; fails if anything but EndpointError (e.g. urllib's ValueError) escapes."""
    with pytest.raises(EndpointError) as info:
        parse_endpoint(url, kind=kind, extras=extras)
    return str(info.value)


# --- secrets in URLs are redacted, whatever the mistake -------------------------------------

SECRETS = ["s3cr3t", "p@ss:w0rd", "pa/ss", "p'q\"r", "%40enc%3A", "hunter2!"]
URL_TEMPLATES = [
    "ssh:/u:{pw}@h",
    "ssh//u:{pw}@h",
    "tcp:u:{pw}@h",
    "u:{pw}@h",
    "sh://u:{pw}@h",
    "SSH://u:{pw}@h",
    "ssh:\\\\u:{pw}@h",
    "ssh:///u:{pw}@h",
    "ssh://u:{pw}@h",
    "ssh://u:{pw}@h:99999",
    "ssh://u:{pw}@h:abc",
    "ssh://u:{pw}@h/sock?x=1",
    "ssh://u:{pw}@h#frag",
    "ssh://u:{pw}@",
    "tcp://u:{pw}@h:2376",
    "tcp://u:{pw}@[::1",
    "unix://u:{pw}@x",
    "docker://ssh://u:{pw}@h:bad",
    "docker://tcp:u:{pw}@h",
    "ssh://u:{pw}@h\n",
    "ssh://u:{pw}@h with spaces",
    "garbage :{pw}@ anywhere",
    "ssh://u:{pw}@@h",
]


@pytest.mark.parametrize("secret", SECRETS)
@pytest.mark.parametrize("template", URL_TEMPLATES)
def test_a_password_in_a_url_never_reaches_the_message(template, secret):
    url = template.format(pw=secret)
    message = raises_endpoint_error(url, kind="buildkit")
    assert secret not in message
    assert repr(secret)[1:-1] not in message  # nor its escaped form
    assert "***" in message


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("ssh://u:pw@h", "ssh://u:***@h"),
        ("ssh:/u:pw@h", "ssh:/u:***@h"),
        ("ssh//u:pw@h", "ssh//u:***@h"),
        ("docker://ssh://u:pw@h", "docker://ssh://u:***@h"),
        ("x 'ssh://u:p@w@h': y", "x 'ssh://u:***@h': y"),
        ("expected e.g. ssh://user@host:22", "expected e.g. ssh://user@host:22"),  # no secret: untouched
        ("no at sign: a:b", "no at sign: a:b"),
    ],
)
def test_redact(text, shown):
    assert redact(text) == shown


def _connection(host: str, extra: dict | None = None) -> SimpleNamespace:
    return SimpleNamespace(conn_id="c", host=host, port=None, login=None, password=None, extra_dejson=extra or {})


@pytest.mark.parametrize("host", ["ssh://u:s3cr3t@h:abc", "tcp:u:s3cr3t@h", "ssh:/u:s3cr3t@h", "ssh://u:s3cr3t@h"])
def test_redacted_through_an_airflow_connection_too(host):
    from airflow_provider_artiload.hooks.connection import endpoint_from_connection

    with pytest.raises(EndpointError) as info:
        endpoint_from_connection(_connection(host), kind="engine", get_connection=lambda _: None)
    assert "s3cr3t" not in str(info.value) and "connection 'c'" in str(info.value)


def test_redacted_when_ssh_conn_id_is_combined_with_a_host():
    from airflow_provider_artiload.hooks.connection import endpoint_from_connection

    ssh = SimpleNamespace(conn_id="box", host="box", port=None, login="ops", password=None, extra_dejson={})
    conn = _connection("tcp://u:s3cr3t@h", {"ssh_conn_id": "box"})
    with pytest.raises(EndpointError) as info:
        endpoint_from_connection(conn, kind="engine", get_connection=lambda _: ssh)
    assert "s3cr3t" not in str(info.value)


# --- URLs that do not parse are EndpointErrors, never urllib's ValueError --------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("tcp://[::1", "malformed host"),
        ("tcp://[", "malformed host"),
        ("tcp://[zz]:1", "malformed host"),
        ("docker://tcp://[::1", "malformed host"),
        ("ssh://host:99999", "port must be a number"),
        ("ssh://host:65536", "port must be a number"),
        ("ssh://host:abc", "port must be a number"),
        ("ssh://host:-1", "port must be a number"),
        ("ssh://host:+1", "port must be a number"),
        ("ssh://host:1.5", "port must be a number"),
        ("ssh://h:22:22", "port must be a number"),
        ("tcp://h:0", "port must be a number"),
        ("ssh://h\x00ost", "control character"),
        ("ssh://h\nost", "control character"),  # urllib would silently drop the newline
        ("tcp://h\tost:1", "control character"),
        ("unix:///x\x00.sock", "control character"),
        ("tcp://h:2376\x7f", "control character"),
        ("ssh://h ost", "space"),
        ("ssh://h\u00a0ost", "space"),
        ("ssh://@", "missing host"),
        ("tcp://:", "missing host"),
        ("ssh://h#frag", "no ?query or #fragment"),
        ("ssh://h/sock?q=1", "no ?query or #fragment"),
        ("tcp://h:2376?tls=1", "only host and port"),
        ("tcp://h:2376#x", "only host and port"),
        ("tcp://@h:2376", "only host and port"),
    ],
)
def test_unparseable_urls_are_endpoint_errors_naming_why(url, why):
    message = raises_endpoint_error(url, kind="buildkit")
    assert why in message
    assert "expected e.g." in message


@pytest.mark.parametrize("url", [123, b"unix:///x.sock", ["unix:///x.sock"], 1.5])
def test_a_url_that_is_not_a_string_is_an_endpoint_error(url):
    assert "URL string" in raises_endpoint_error(url)


@pytest.mark.parametrize("extras", [["tls", True], "tls=false", 5])
def test_extras_that_are_not_a_mapping_are_an_endpoint_error(extras):
    assert "JSON object" in raises_endpoint_error("tcp://h", extras=extras)


# --- host keys: .pub lines, ssh-keyscan lines, bare blobs -----------------------------------


@pytest.mark.parametrize(
    ("value", "key_type", "b64"),
    [
        (f"ssh-ed25519 {ED25519}", "ssh-ed25519", ED25519),
        (f"ssh-ed25519 {ED25519} deploy@build-1", "ssh-ed25519", ED25519),
        (f"ssh-ed25519 {ED25519} a comment with spaces", "ssh-ed25519", ED25519),
        (f"  ssh-ed25519   {ED25519}  \n", "ssh-ed25519", ED25519),
        (f"build-1 ssh-ed25519 {ED25519}", "ssh-ed25519", ED25519),  # ssh-keyscan output
        (f"[build-1]:2222 ssh-ed25519 {ED25519}", "ssh-ed25519", ED25519),
        (f"build-1,10.0.0.5 ssh-ed25519 {ED25519} c", "ssh-ed25519", ED25519),
        (f"|1|c2FsdA==|aGFzaA== ssh-ed25519 {ED25519}", "ssh-ed25519", ED25519),  # hashed known_hosts
        (f"ssh-gw ssh-ed25519 {ED25519}", "ssh-ed25519", ED25519),  # a host named like a key type
        (f"# build-1:22 SSH-2.0-OpenSSH_9.6\n\nbuild-1 ssh-ed25519 {ED25519}\n", "ssh-ed25519", ED25519),
        (ED25519, "ssh-ed25519", ED25519),  # a bare blob names its own type
        (f"ssh-rsa {RSA_KEY.get_base64()} me@x", "ssh-rsa", RSA_KEY.get_base64()),
        (f"h {ECDSA_KEY.get_name()} {ECDSA_KEY.get_base64()}", ECDSA_KEY.get_name(), ECDSA_KEY.get_base64()),
    ],
)
def test_host_key_forms_are_normalised_and_usable_by_the_transport(value, key_type, b64):
    ssh = parse_endpoint("ssh://u@h", kind="engine", extras={"host_key": value}).ssh
    assert ssh.host_key == f"{key_type} {b64}"
    key = load_host_key(ssh.host_key, where="ssh://u@h")
    assert key.get_name() == key_type and key.get_base64() == b64


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("ssh-ed25519", "not a public key"),
        ("ssh-ed25519 not*base64", "not a public key"),
        ("garbage", "not a public key"),
        ("a b c d", "not a public key"),
        ("# only a comment", "must be one public key line, got 0"),
        (f"ssh-ed25519 {ED25519}\nssh-rsa {RSA_KEY.get_base64()}", "must be one public key line, got 2"),
        (f"@cert-authority *.example ssh-ed25519 {ED25519}", "markers such as @cert-authority"),
        (f"@revoked h ssh-ed25519 {ED25519}", "markers such as @revoked"),
        (f"ssh-rsa {ED25519}", "says ssh-rsa but the key is ssh-ed25519"),
        (f"h ecdsa-sha2-nistp256 {ED25519}", "says ecdsa-sha2-nistp256 but the key is ssh-ed25519"),
        (5, "must be a string"),
        (["ssh-ed25519", ED25519], "must be a string"),
    ],
)
def test_bad_host_keys_name_the_extra(value, needle):
    message = raises_endpoint_error("ssh://u@h", extras={"host_key": value})
    assert "'host_key'" in message and needle in message


def test_a_private_key_pasted_as_host_key_is_refused_without_echoing_it():
    body = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW"
    pasted = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----\n"
    message = raises_endpoint_error("ssh://u@h", extras={"host_key": pasted})
    assert "private key" in message and body[:8] not in message


def test_split_host_key_gives_the_raw_blob():
    assert split_host_key(f"h ssh-ed25519 {ED25519} c") == ("ssh-ed25519", base64.b64decode(ED25519))


# --- timeouts: finite, 0 < t <= a day -------------------------------------------------------

BAD_SECONDS = [
    "nan", "NaN", float("nan"), "inf", "-inf", "Infinity", float("inf"), -1, "-1", -0.5, 0, "0", "0.0", 1e12,
    "1e12", MAX_SECONDS + 0.001, 10**20, True, False, [], {}, [30], "soon", "10s", "1,5",
]  # fmt: skip


@pytest.mark.parametrize("value", BAD_SECONDS)
@pytest.mark.parametrize(("extra", "kind", "url"), [("conn_timeout", "engine", "ssh://u@h"), ("timeout", "engine", "tcp://h"),
                                                    ("transfer_timeout", "engine", "unix:///s"), ("conn_timeout", "buildkit", "tcp://h")])  # fmt: skip
def test_absurd_timeouts_name_the_extra_and_the_value(extra, kind, url, value):
    message = raises_endpoint_error(url, kind=kind, extras={extra: value})
    assert f"extra {extra!r}" in message and repr(value) in message
    assert "0 < t <= 86400" in message or "at most 86400" in message


@pytest.mark.parametrize(("value", "seconds"), [("0.5", 0.5), (1, 1.0), ("86400", 86400.0), (30.5, 30.5), (" 7 ", 7.0), (None, 10.0), ("", 10.0)])
def test_sane_timeouts(value, seconds):
    assert parse_endpoint("ssh://u@h", kind="engine", extras={"conn_timeout": value}).ssh.conn_timeout == seconds


def test_parse_float_takes_a_maximum():
    assert parse_float("5", name="t", default=1.0, maximum=10) == 5.0
    with pytest.raises(EndpointError, match="at most 10 seconds"):
        parse_float(11, name="t", default=1.0, maximum=10)
    assert math.isfinite(parse_float(None, name="t", default=3.0))


# --- extras of the wrong type ---------------------------------------------------------------

WRONG_TYPES = [
    ("ciphers", 1), ("ciphers", {"aes": 1}), ("ciphers", [1]), ("ciphers", [" "]), ("ciphers", "aes*,x"),
    ("ciphers", "[1, 2]"), ("ciphers", "[unclosed"),
    ("disabled_algorithms", "x"), ("disabled_algorithms", "[1]"), ("disabled_algorithms", 5),
    ("disabled_algorithms", ["pubkeys"]), ("disabled_algorithms", {"pubkeys": "rsa"}),
    ("disabled_algorithms", {"pubkeys": [1]}), ("disabled_algorithms", '{"pubkeys": "rsa"}'),
    ("compress", "maybe"), ("compress", 2), ("compress", 1.0), ("compress", []), ("compress", "yes please"),
    ("look_for_keys", 2), ("look_for_keys", "2"), ("look_for_keys", -1), ("look_for_keys", "nope"),
    ("no_host_key_check", "ture"), ("allow_host_key_change", {}), ("tls", "maybe"), ("tls_verify", 3),
    ("key_file", 1), ("key_file", ["/k"]), ("known_hosts", True), ("socket_path", 5), ("socket_path", "rel.sock"),
    ("tls_ca_cert", 1), ("tls_hostname", ["h"]), ("ssh_conn_id", 7),
]  # fmt: skip
BUILDKIT_WRONG_TYPES = [
    ("registry_conn_ids", 5), ("registry_conn_ids", "[1, 2]"), ("context_roots", {"a": 1}), ("context_roots", "[/x"),
    ("network", 5), ("engine_conn_id", 3),
]  # fmt: skip


@pytest.mark.parametrize(("extra", "value"), WRONG_TYPES)
def test_wrong_types_name_the_extra_and_the_value(extra, value):
    message = raises_endpoint_error("ssh://u@h", extras={extra: value})
    assert f"'{extra}'" in message
    assert repr(value) in message or repr(value).strip("'") in message


@pytest.mark.parametrize(("extra", "value"), BUILDKIT_WRONG_TYPES)
def test_wrong_types_of_hook_extras_fail_at_parse_time(extra, value):
    message = raises_endpoint_error("docker://", kind="buildkit", extras={extra: value})
    assert f"'{extra}'" in message


@pytest.mark.parametrize(("extra", "value"), [("private_key", 1234567890), ("private_key_passphrase", 98765432),
                                              ("tls_client_key", ["-----BEGIN KEY----- 31337"])])  # fmt: skip
def test_wrong_types_of_secret_extras_do_not_echo_the_value(extra, value):
    message = raises_endpoint_error("ssh://u@h", extras={extra: value})
    assert f"'{extra}'" in message and "not shown" in message
    assert str(value).strip("[]'") not in message and "31337" not in message


# --- unset and unknown extras ---------------------------------------------------------------

ALL_KNOWN = sorted(KNOWN_EXTRAS["engine"] | KNOWN_EXTRAS["buildkit"])


@pytest.mark.parametrize("empty", [None, ""])
@pytest.mark.parametrize("extra", ALL_KNOWN)
def test_null_or_empty_extras_mean_unset(extra, empty, caplog):
    kind = "engine" if extra in KNOWN_EXTRAS["engine"] else "buildkit"
    url = "ssh://u@h" if kind == "engine" else "docker://ssh://u@h"
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        endpoint = parse_endpoint(url, kind=kind, extras={extra: empty})
    assert endpoint == parse_endpoint(url, kind=kind)
    assert not caplog.records


def test_the_whole_ui_form_saved_empty_is_the_default(caplog):
    """Airflow's form saves every declared field; untouched ones arrive as null."""
    kinds = {"docker_engine": "engine", "buildkit": "buildkit", "containerd": "containerd"}
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for conn_type in get_provider_info()["connection-types"]:
            kind = kinds[conn_type["connection-type"]]
            extras = dict.fromkeys(conn_type["conn-fields"])
            assert set(extras) <= KNOWN_EXTRAS[kind], "a form field the endpoint parser does not know"
            url = "unix:///run/x.sock" if kind == "containerd" else "tcp://h"
            assert parse_endpoint(url, kind=kind, extras=extras) == parse_endpoint(url, kind=kind)
    assert not caplog.records


def test_tls_off_with_the_forms_verify_default_is_fine():
    assert parse_endpoint("tcp://h", kind="engine", extras={"tls": "false", "tls_verify": "true"}).tls is None


@pytest.mark.parametrize(
    ("kind", "extras"),
    [
        ("engine", {"timeout": "30", "transfer_timeout": 600, "socket_path": "/s", "ssh_conn_id": "box"}),
        ("buildkit", {"network": "none", "registry_conn_ids": '["r1"]', "context_roots": "/a,/b",
                      "engine_conn_id": "e", "conn_timeout": 5}),
        ("containerd", {"namespace": "k8s.io", "snapshotter": "overlayfs", "platform": "linux/amd64"}),
    ],
)  # fmt: skip
def test_the_hooks_own_extras_are_known(kind, extras, caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        parse_extras(extras, kind=kind)
    assert not caplog.records


@pytest.mark.parametrize(
    ("kind", "typo", "meant"),
    [
        ("engine", "key_fle", "key_file"),
        ("engine", "hostkey", "host_key"),
        ("engine", "tls_verfy", "tls_verify"),
        ("engine", "conn_timout", "conn_timeout"),
        ("engine", "transfer_timout", "transfer_timeout"),
        ("engine", "socketpath", "socket_path"),
        ("engine", "no_host_key_chek", "no_host_key_check"),
        ("engine", "tlsverify", "tls_verify"),
        ("buildkit", "netwrok", "network"),
        ("buildkit", "context_root", "context_roots"),
        ("buildkit", "registry_conn_id", "registry_conn_ids"),
        ("buildkit", "engine_conn", "engine_conn_id"),
    ],
)
def test_unknown_extras_warn_naming_the_nearest_known_one(kind, typo, meant, caplog):
    url = "tcp://h" if kind == "engine" else "docker://"
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        parse_endpoint(url, kind=kind, extras={typo: "x"})
    [record] = caplog.records
    assert repr(typo) in record.getMessage() and f"did you mean {meant!r}" in record.getMessage()


@pytest.mark.parametrize(
    ("kind", "extra", "owner"),
    [("engine", "network", "buildkit"), ("engine", "namespace", "containerd"), ("buildkit", "timeout", "containerd and engine")],
)
def test_an_extra_of_another_kind_says_whose_it_is(kind, extra, owner, caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        parse_extras({extra: "x"}, kind=kind)
    [record] = caplog.records
    assert f"it is for {owner}" in record.getMessage()


def test_an_unknown_extra_that_is_unset_is_silent(caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        parse_extras({"whatever": None, "other": ""}, kind="engine")
    assert not caplog.records


def test_an_unknown_extra_never_logs_its_value(caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        parse_extras({"pasword": "hunter2"}, kind="engine")
    assert "hunter2" not in caplog.text


def test_every_known_extra_has_a_parser():
    assert set(ALL_KNOWN) | KNOWN_EXTRAS["containerd"] <= set(EXTRA_PARSERS)
