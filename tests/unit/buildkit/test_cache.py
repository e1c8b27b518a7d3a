"""Build cache options (buildx syntax), the OCI-layout cache store, and the session's Content service."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from concurrent import futures

import grpc
import pytest

from airflow_provider_artiload.buildkit.cache import FROM, TO, CachePlan, check_engine_exports, parse_cache
from airflow_provider_artiload.buildkit.cache_cleanup import clean
from airflow_provider_artiload.buildkit.cache_store import INDEX, LayoutStore
from airflow_provider_artiload.buildkit.session.content import STORE_HEADER, ContentStores
from airflow_provider_artiload.containerd._proto import content_pb2, content_pb2_grpc
from airflow_provider_artiload.exceptions import BuildError, DigestMismatch


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ parsing


def test_buildx_strings_dicts_and_bare_locations():
    (local,) = parse_cache("type=local,dest=/c/app,mode=max", TO)
    assert (local.type, dict(local.attrs), local.location) == ("local", {"dest": "/c/app", "mode": "max"}, "/c/app")
    (src,) = parse_cache("type=local,src=/c/app", FROM)
    assert src.location == "/c/app" and src.name == "cache_from[0]"
    reg, inline = parse_cache(["type=registry,ref=127.0.0.1:5000/app:cache,mode=max", {"type": "inline"}], TO)
    assert reg.attrs == {"ref": "127.0.0.1:5000/app:cache", "mode": "max"} and inline.type == "inline"
    (s3,) = parse_cache({"type": "s3", "bucket": "b", "region": "eu-west-1", "prefix": "p/", "aws_conn_id": "aws"}, FROM)
    assert s3.attrs["aws_conn_id"] == "aws"
    (bare,) = parse_cache("s3://store@bucket/cache/app", TO)
    assert (bare.type, bare.location) == ("local", "s3://store@bucket/cache/app")
    (name,) = parse_cache("registry.example:5000/app:cache", FROM)
    assert (name.type, name.attrs["ref"]) == ("registry", "registry.example:5000/app:cache")
    assert parse_cache(None, TO) == () and parse_cache([], FROM) == () and parse_cache("", TO) == ()
    (quoted,) = parse_cache('type=local,"dest=/c/a,b"', TO)
    assert quoted.location == "/c/a,b"


@pytest.mark.parametrize(
    ("value", "field", "message"),
    [
        ("type=local", TO, r"cache_to\[0\]: type=local needs dest="),
        ("type=local,dest=/x", FROM, r"cache_from\[0\]: type=local does not take dest in cache_from"),
        (["type=inline", "type=bogus"], TO, r"cache_to\[1\]: unknown cache type 'bogus'"),
        ("type=inline", FROM, r"cache_from\[0\]: type=inline is export-only"),
        ("type=local,dest=/x,mode=fast", TO, r"mode must be min or max, got 'fast'"),
        ("type=inline,mode=max", TO, r"exports mode=min only"),
        ("type=registry,ref=UPPER/Case:x", TO, r"ref='UPPER/Case:x' is not an image reference"),
        ("type=s3,bucket=b,region=r,secret_access_key=shh", TO, r"secret_access_key must not be written in the DAG"),
        ("type=s3,bucket=b", FROM, r"type=s3 needs region="),
        ("type=s3,bucket=b,region=r,blobs_prefix=x", TO, r"type=s3 does not take blobs_prefix"),
        ("type=local,dest=/x,dest=/y", TO, r"dest is given twice"),
        ("dest=/x", TO, r"the entry has no type"),
        (42, TO, r"cache_to\[0\]: expected a string"),
        ("type=local,dest", TO, r"'dest' is not key=value"),
    ],
)
def test_bad_entries_name_the_field(value, field, message):
    with pytest.raises(BuildError, match=message):
        parse_cache(value, field)


def test_classic_engines_refuse_every_export_but_inline():
    entries = parse_cache(["type=inline", "type=local,dest=/c"], TO)
    with pytest.raises(BuildError) as err:
        check_engine_exports(entries, store="classic", where="unix:///e.sock")
    text = str(err.value)
    assert "cache_to[1]" in text and "type=local" in text
    assert "containerd image store" in text and "standalone BuildKit" in text and "type=inline" in text
    assert check_engine_exports(entries, store="containerd", where="x") == entries
    lenient = parse_cache(["type=inline", "type=local,dest=/c,ignore-error=true"], TO)
    assert check_engine_exports(lenient, store="classic", where="x") == lenient[:1]  # dropped, not fatal
    check_engine_exports(parse_cache("type=inline", TO) + parse_cache("type=local,src=/c", FROM), store="classic", where="x")


def test_s3_entries_are_served_by_the_session_with_no_credentials_on_the_wire(tmp_path):
    entries = parse_cache("type=s3,bucket=b,region=us-east-1,prefix=/cache/app/,aws_conn_id=moto,mode=max,name=app", TO)
    entries += parse_cache({"type": "s3", "bucket": "b", "region": "us-east-1", "prefix": "cache/app", "aws_conn_id": "moto",
                            "name": "app"}, FROM)
    assert [e.location for e in entries] == ["s3://moto@b/cache/app"] * 2 and entries[0].tag == "app"
    opened = []

    def open_store(entry):
        opened.append(entry.location)
        return LayoutStore(str(tmp_path / "c"), label=entry.location)

    plan = CachePlan.prepare(entries, open_store)
    assert opened == ["s3://moto@b/cache/app"] and plan.skipped == ["s3://moto@b/cache/app"]  # one store, no index yet
    options = plan.options()
    assert [(e.Type, dict(e.Attrs)) for e in options.Exports] == [("local", {"dest": "s3://moto@b/cache/app", "mode": "max"})]
    assert list(options.Imports) == []
    (store,) = plan.stores.values()
    store.record_export(_cache_manifest(store, b"x"), tag="app")
    plan = CachePlan.prepare(entries, open_store)
    assert [(e.Type, dict(e.Attrs)) for e in plan.options().Imports] == [
        ("local", {"src": "s3://moto@b/cache/app", "digest": store.latest("app")["digest"]})]
    assert json.loads(plan.frontend_attrs()["cache-imports"]) == [{"Type": "local", "Attrs": dict(plan.options().Imports[0].Attrs)}]
    assert [type(a).__name__ for a in plan.attachables()] == ["ContentStores"]


# ------------------------------------------------------------------ the store


def _put(store: LayoutStore, data: bytes) -> str:
    ingest = store.ingest(digest(data))
    ingest.write(data)
    return ingest.commit(len(data), digest(data))


def _cache_manifest(store: LayoutStore, payload: bytes) -> dict:
    layer = _put(store, payload)
    config = _put(store, json.dumps({"layers": [{"blob": layer}]}).encode())
    manifest = json.dumps({"schemaVersion": 2, "config": {"digest": config}, "layers": [{"digest": layer}]}).encode()
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": _put(store, manifest), "size": len(manifest)}


def test_blobs_are_verified_before_they_appear(tmp_path):
    store = LayoutStore(str(tmp_path / "c"))
    ingest = store.ingest(digest(b"right"))
    ingest.write(b"wrong")
    with pytest.raises(DigestMismatch, match="but BuildKit named it"):
        ingest.commit(5, digest(b"right"))
    assert store.size(digest(b"right")) is None and store.size(digest(b"wrong")) is None
    assert os.listdir(tmp_path / "c" / "blobs" / "sha256") == []  # no temp file left behind
    spooled = store.ingest(None)  # digest unknown until the end
    spooled.write(b"abc")
    assert spooled.commit(3, None) == digest(b"abc") and store.size(digest(b"abc")) == 3
    assert b"".join(store.read_range(digest(b"abc"), 1, 1)) == b"b"


def test_index_points_at_the_latest_export_and_keeps_other_tags(tmp_path):
    store = LayoutStore(str(tmp_path / "c"))
    first, second, other = (_cache_manifest(store, bytes([i]) * 10) for i in range(3))
    store.record_export(first, now=1000)
    store.record_export(other, tag="other", now=1001)
    store.record_export(second, now=1002)
    assert store.latest()["digest"] == second["digest"] and store.latest("other")["digest"] == other["digest"]
    store.record_export(first, now=900)  # an export older than what the index holds does not take the tag back
    assert store.latest()["digest"] == second["digest"]
    assert json.loads((tmp_path / "c" / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert len(os.listdir(tmp_path / "c" / "artiload" / "exports")) == 4


def test_concurrent_exports_leave_a_whole_index_naming_one_of_them(tmp_path):
    root = str(tmp_path / "c")
    manifests = [_cache_manifest(LayoutStore(root), f"writer {i}".encode()) for i in range(8)]
    errors = []

    def export(desc):
        try:
            for _ in range(5):
                LayoutStore(root).record_export(desc)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=export, args=(m,)) for m in manifests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    index = json.loads((tmp_path / "c" / INDEX).read_text())
    assert len(index["manifests"]) == 1 and index["manifests"][0]["digest"] in {m["digest"] for m in manifests}
    assert not [n for n in os.listdir(root) if n.startswith(".")]  # no temp files


def test_clean_keeps_what_the_roots_need_and_young_blobs(tmp_path):
    store = LayoutStore(str(tmp_path / "c"))
    old = _cache_manifest(store, b"old layer")
    store.record_export(old)
    new = _cache_manifest(store, b"new layer")
    store.record_export(new)
    stray = _put(store, b"unreferenced")
    long_ago = time.time() - 10 * 86400
    for name in os.listdir(tmp_path / "c" / "blobs" / "sha256"):
        os.utime(tmp_path / "c" / "blobs" / "sha256" / name, (long_ago, long_ago))
    # within the grace period every export record is a root: only the stray blob goes
    assert clean(store, grace_seconds=3600).removed_blobs == [stray]
    for name in os.listdir(tmp_path / "c" / "artiload" / "exports"):
        os.utime(tmp_path / "c" / "artiload" / "exports" / name, (long_ago, long_ago))
    report = clean(store, grace_seconds=3600)
    gone = set(report.removed_blobs)
    assert old["digest"] in gone and digest(b"old layer") in gone and stray not in gone
    assert report.roots == [new["digest"]] and len(report.removed_records) == 2
    for kept in (new["digest"], digest(b"new layer")):
        assert store.size(kept) is not None
    young = _put(store, b"written just now, not yet in an index")
    assert young not in clean(store, grace_seconds=3600).removed_blobs


# ------------------------------------------------------------------ the Content service over gRPC


@pytest.fixture
def content(tmp_path):
    store = LayoutStore(str(tmp_path / "c"))
    service = ContentStores({"local:/c": store})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    service.register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield content_pb2_grpc.ContentStub(channel), store, service
    channel.close()
    server.stop(None)


MD = ((STORE_HEADER, "local:/c"),)


def _write(stub, data: bytes, expected: str, chunk: int = 3):
    def requests():
        yield content_pb2.WriteContentRequest(action=content_pb2.STAT, ref="r1", total=len(data), expected=expected)
        for i in range(0, len(data), chunk):
            yield content_pb2.WriteContentRequest(action=content_pb2.WRITE, offset=i, data=data[i:i + chunk])
        yield content_pb2.WriteContentRequest(action=content_pb2.COMMIT, total=len(data), expected=expected, offset=len(data))

    return list(stub.Write(requests(), metadata=MD))


def test_content_service_writes_reads_and_skips_what_it_has(content):
    stub, store, _ = content
    data = b"0123456789" * 5
    replies = _write(stub, data, digest(data))
    assert replies[-1].action == content_pb2.COMMIT and replies[-1].offset == len(data) and replies[-1].digest == digest(data)
    assert stub.Info(content_pb2.InfoRequest(digest=digest(data)), metadata=MD).info.size == len(data)
    got = b"".join(r.data for r in stub.Read(content_pb2.ReadContentRequest(digest=digest(data), offset=5, size=7), metadata=MD))
    assert got == data[5:12]
    with pytest.raises(grpc.RpcError) as err:
        _write(stub, data, digest(data))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS and store.stats.blobs_skipped == 1
    with pytest.raises(grpc.RpcError) as err:
        stub.Info(content_pb2.InfoRequest(digest=digest(b"nope")), metadata=MD)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        stub.Info(content_pb2.InfoRequest(digest=digest(data)), metadata=((STORE_HEADER, "local:/other"),))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "unknown store" in err.value.details()


def test_content_service_refuses_bytes_that_do_not_match(content):
    stub, store, service = content
    with pytest.raises(grpc.RpcError) as err:
        _write(stub, b"tampered", digest(b"original"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "but BuildKit named it" in err.value.details()
    assert store.size(digest(b"original")) is None and service.errors


def test_ranged_reads_continue_on_one_handle_and_seek_when_they_jump(tmp_path, monkeypatch):
    store = LayoutStore(str(tmp_path / "c"))
    data = bytes(range(256)) * 40
    blob = _put(store, data)
    opened = []
    real = store.open_blob
    monkeypatch.setattr(store, "open_blob", lambda d: opened.append(d) or real(d))
    parts = [b"".join(store.read_range(blob, off, 1000, chunk=300)) for off in range(0, len(data), 1000)]
    assert b"".join(parts) == data and len(opened) == 1  # BuildKit's 1 MiB calls: one handle
    assert b"".join(store.read_range(blob, 5, 3)) == data[5:8] and b"".join(store.read_range(blob, 0, 0)) == data
    assert len(opened) == 1
    store.close()
    assert b"".join(store.read_range(blob, 7, 2)) == data[7:9] and len(opened) == 2
