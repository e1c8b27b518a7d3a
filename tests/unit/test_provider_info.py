"""The connection forms (get_provider_info) against what the hooks and docs/connections.md say.

Defaults are read from the hooks by building them with no extras, never typed here as numbers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from airflow_provider_artiload import endpoints
from airflow_provider_artiload.get_provider_info import get_provider_info
from airflow_provider_artiload.hooks import buildkit as buildkit_hook_module
from airflow_provider_artiload.hooks import engine as engine_hook_module
from airflow_provider_artiload.hooks.connection import endpoint_from_connection

DOCS = Path(__file__).resolve().parents[2] / "docs" / "connections.md"
TYPES = {t["connection-type"]: t for t in get_provider_info()["connection-types"]}
SCHEMES = ("All endpoints. ", "tcp:// only. ", "ssh:// only. ", "docker:// only. ")


def fields(conn_type: str) -> dict:
    return TYPES[conn_type]["conn-fields"]


def stated_default(field: dict) -> str | None:
    match = re.search(r"Default: (.+)\.$", field["description"])
    return match.group(1) if match else None


def connection(host: str, extras: dict) -> SimpleNamespace:
    return SimpleNamespace(conn_id="c", host=host, port=None, login=None, password=None, extra_dejson=extras)


def no_lookup(conn_id):
    raise AssertionError(conn_id)


def hook_defaults(conn_type: str, monkeypatch) -> dict[str, object]:
    """What each hook uses when an extra is unset, read from the hooks themselves."""
    ssh = endpoints.parse_ssh_extras({})
    tls = endpoints.parse_endpoint("tcp://h", kind="engine").tls
    kind = {"docker_engine": "engine", "buildkit": "buildkit", "containerd": "containerd"}[conn_type]
    defaults: dict[str, object] = {
        "socket_path": endpoints.parse_endpoint("ssh://u@h", kind=kind).address,
        **{name: getattr(ssh, name) for name in ("no_host_key_check", "look_for_keys", "allow_host_key_change", "compress")},
    }
    if conn_type == "containerd":  # no TLS: nodes are reached on their socket or over SSH
        from airflow_provider_artiload.hooks.containerd import ContainerdHook

        hook = ContainerdHook("c")
        hook.__dict__["_connection"] = connection("unix:///x.sock", {})
        settings = hook.settings
        defaults.update(namespace=settings["namespace"], snapshotter=settings["snapshotter"],
                        timeout=settings["timeout"], conn_timeout=ssh.conn_timeout)
        return defaults
    defaults.update(tls=tls is not None, tls_verify=tls.verify)
    monkeypatch.setattr(engine_hook_module, "open_dialer", lambda endpoint, **kw: object())
    monkeypatch.setattr(buildkit_hook_module, "open_dialer", lambda endpoint, **kw: object())
    if conn_type == "docker_engine":
        hook = engine_hook_module.DockerEngineHook("c")
        hook.__dict__["_connection"] = connection("unix:///x.sock", {})
        defaults.update(timeout=hook.client.timeout, transfer_timeout=hook.client.transfer_timeout,
                        conn_timeout=ssh.conn_timeout)
    else:
        seen = {}

        class Recorder:
            def __init__(self, dialer, *, timeout=None, **kw):
                seen["timeout"] = timeout

        monkeypatch.setattr(buildkit_hook_module, "EngineClient", Recorder)
        hook = buildkit_hook_module.BuildKitHook("c")
        hook.__dict__["_connection"] = connection("docker://unix:///x.sock", {})
        hook.client  # noqa: B018 - builds the (recorded) engine client
        defaults["conn_timeout"] = seen["timeout"]
    return defaults


def as_text(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@pytest.mark.parametrize("conn_type", TYPES)
def test_no_field_declares_a_schema_default(conn_type):
    """The UI saves a declared default into the extras: it would become an explicit setting."""
    assert [name for name, f in fields(conn_type).items() if "default" in f["schema"]] == []


@pytest.mark.parametrize("conn_type", TYPES)
def test_every_description_names_the_schemes_it_applies_to(conn_type):
    bad = [name for name, f in fields(conn_type).items() if not f["description"].startswith(SCHEMES)]
    assert bad == []


@pytest.mark.parametrize("conn_type", TYPES)
def test_stated_defaults_are_the_hooks_defaults(conn_type, monkeypatch):
    actual = hook_defaults(conn_type, monkeypatch)
    checked = 0
    for name, value in actual.items():
        stated = stated_default(fields(conn_type)[name])
        assert stated is not None, f"{conn_type}.{name} states no default"
        assert stated.split(" (")[0] == as_text(value), f"{conn_type}.{name}: form says {stated}, hook uses {value}"
        checked += 1
    assert checked >= 8


@pytest.mark.parametrize("conn_type", TYPES)
def test_three_way_choices_parse_as_the_hooks_booleans(conn_type):
    for name, f in fields(conn_type).items():
        if f["schema"].get("enum") == [None, "true", "false"]:
            assert endpoints.parse_bool("true", name=name, default=False) is True
            assert endpoints.parse_bool("false", name=name, default=True) is False
            assert set(f["schema"]["values_display"]) == {"None", "true", "false"}


@pytest.mark.parametrize("conn_type", TYPES)
def test_enum_labels_cover_every_value(conn_type):
    """The UI labels a value missing from values_display with the null option's label."""
    for name, f in fields(conn_type).items():
        if "enum" in f["schema"]:
            assert {str(v) for v in f["schema"]["enum"]} == set(f["schema"]["values_display"]), name


@pytest.mark.parametrize(("conn_type", "kind", "host"), [
    ("docker_engine", "engine", "tcp://h:2376"), ("docker_engine", "engine", "ssh://u@h"),
    ("buildkit", "buildkit", "tcp://h:1234"), ("buildkit", "buildkit", "ssh://u@h"),
])
def test_a_form_saved_untouched_means_the_defaults(conn_type, kind, host):
    """Every field null (what the UI saves for untouched fields) is the same as no extras."""
    untouched = {name: None for name in fields(conn_type)}
    assert endpoint_from_connection(connection(host, untouched), kind=kind, get_connection=no_lookup) == \
        endpoint_from_connection(connection(host, {}), kind=kind, get_connection=no_lookup)


def test_tls_off_with_the_rest_untouched_is_plain_tcp():
    saved = {**{name: None for name in fields("docker_engine")}, "tls": "false"}
    endpoint = endpoint_from_connection(connection("tcp://h", saved), kind="engine", get_connection=no_lookup)
    assert endpoint.tls is None and endpoint.port == 2375


def test_null_extras_never_override_the_ssh_connection():
    ssh_conn = SimpleNamespace(conn_id="s", host="edge", port=22, login="deploy", password=None,
                               extra_dejson={"no_host_key_check": "true", "key_file": "/k"})
    saved = {**{name: None for name in fields("docker_engine")}, "ssh_conn_id": "s"}
    endpoint = endpoint_from_connection(connection("", saved), kind="engine", get_connection=lambda _: ssh_conn)
    assert endpoint.ssh.no_host_key_check is True and endpoint.ssh.key_file == "/k"


def docs_defaults() -> dict[str, dict[str, str]]:
    """`extra` -> default, per section of docs/connections.md's extras tables."""
    tables: dict[str, dict[str, str]] = {}
    section = ""
    for line in DOCS.read_text().splitlines():
        if line.startswith("#"):
            section = line.strip("# ")
        match = re.match(r"\| `(\w+)` \| ([^|]+) \|", line)
        if match and section:
            tables.setdefault(section, {})[match.group(1)] = match.group(2).strip().strip("`")
    return tables


@pytest.mark.parametrize("conn_type", TYPES)
def test_docs_state_the_same_defaults_as_the_form(conn_type, monkeypatch):
    docs = {}
    for section, table in docs_defaults().items():
        if section.startswith(("TLS", "SSH")) or section.startswith(f"`{conn_type}` only"):
            docs.update(table)
    actual = hook_defaults(conn_type, monkeypatch)
    for name, value in actual.items():
        if name == "socket_path":
            continue  # the docs say "per type (above)"
        documented = docs[name]
        if conn_type == "buildkit" and name == "conn_timeout":
            documented = docs_defaults()["`buildkit` only"][name]
        expected = as_text(value)
        assert documented in (expected, {"on": "true", "off": "false"}.get(expected)), f"{conn_type}.{name}"


def test_labels_in_the_docs_match_the_form():
    text = DOCS.read_text()
    for conn_type in TYPES:
        for name, f in fields(conn_type).items():
            assert f"`{name}`" in text, f"docs/connections.md does not mention {name}"
    assert json.dumps(get_provider_info())  # plain data


def test_the_docker_image_asset_scheme_is_registered_and_checked():
    from airflow_provider_artiload.operators import _assets

    [entry] = get_provider_info()["asset-uris"]
    assert entry["schemes"] == [_assets.IMAGE_SCHEME]
    module, _, name = entry["handler"].rpartition(".")
    handler = getattr(__import__(module, fromlist=[name]), name)
    from urllib.parse import urlsplit

    assert handler(urlsplit("docker-image://artiload_local/artiload/refresh")).path == "/artiload/refresh"
    for bad in ("docker-image:///app", "docker-image://engine", "docker-image://engine/app:1", "docker-image://e/app@sha256:1"):
        with pytest.raises(ValueError):
            handler(urlsplit(bad))


def test_load_events_are_one_per_engine_and_repository():
    from airflow.sdk.execution_time.context import OutletEventAccessors

    from airflow_provider_artiload.artifacts import LoadOutcome
    from airflow_provider_artiload.operators import DockerLoadOperator, _assets
    from airflow_provider_artiload.operators.load import emit_loaded

    op = DockerLoadOperator(task_id="l", source="/x.tar", engine_conn_id=["a", "b"])
    assert op.outlets == [_assets.alias()]
    context = {"outlet_events": OutletEventAccessors()}
    hooks = [SimpleNamespace(conn_name_attr="engine_conn_id", engine_conn_id="a"),
             SimpleNamespace(conn_name_attr="containerd_conn_id", containerd_conn_id="b")]  # an engine and a node
    tags = ["reg:5000/app/x:1", "reg:5000/app/x:latest", "other:2"]
    emit_loaded(context, hooks, [LoadOutcome("sha256:1", tags, "unix:///a"), LoadOutcome("sha256:1", tags, "ssh://b")])
    events = {e.dest_asset_key.uri: e.extra for e in context["outlet_events"][_assets.alias()].asset_alias_events}
    assert sorted(events) == ["docker-image://a/other", "docker-image://a/reg:5000/app/x",
                              "docker-image://b/other", "docker-image://b/reg:5000/app/x"]
    assert events["docker-image://b/reg:5000/app/x"] == {
        "image_id": "sha256:1", "digest": "sha256:1", "tags": tags[:2], "engine": "ssh://b", "mode": "full"}
    emit_loaded({}, hooks, [LoadOutcome("sha256:1", tags, "unix:///a")])  # outside a task run: nothing, no error
