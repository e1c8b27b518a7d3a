"""Build cache across engines, against real engines (no fakes): the random-bytes oracle.

A Dockerfile whose RUN step writes random bytes is built with ``cache_to`` on
one Docker 28 containerd-store engine (the engine kind whose BuildKit exports
cache), then with ``cache_from`` on a second engine that never built it: the
second image carries the same random bytes only if the cache was reused. A
control with ``no_cache=True`` must differ. Done for a local directory, an
sftp:// and an s3:// ObjectStoragePath (served by artiload's session), a
registry (Debian's docker-registry, with basic auth) and BuildKit's own
``type=s3`` (moto). The engines are started here whatever
ARTILOAD_TEST_ENGINE says, so these run in the default pass.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import threading
import time
from pathlib import Path

import docker
import pytest
import structlog

from airflow_provider_artiload.buildkit.cache import CachePlan, parse_cache
from airflow_provider_artiload.buildkit.client import BuildRequest
from airflow_provider_artiload.exceptions import BuildError
from airflow_provider_artiload.hooks.cache import open_store
from airflow_provider_artiload.hooks.buildkit import BuildKitHook
from airflow_provider_artiload.operators.build import BuildArtifactOperator
from airflow_provider_artiload.operators.cache_cleanup import BuildCacheCleanupOperator
from tests import processes
from tests.integration.test_s3 import BUCKET, keys
from tests.processes import harness

import harness_registry  # noqa: E402  (scripts/ is on sys.path through tests.processes)

BUSYBOX = "/bin/busybox"
REGISTRY_USER, REGISTRY_PASSWORD = "builder", "cache-pass-7f3a"


def _engines(request, n: int, kind: str, prefix: str) -> list[harness.Engine]:
    started = []
    for i in range(n):
        workdir = processes.workdir()
        eng = processes.start(f"{kind} engine {prefix}{i}", workdir,
                              lambda d, i=i: harness.start_engine(d, name=f"{prefix}{i}", kind=harness.engine_kind(kind)))
        started.append((eng, workdir))
    request.addfinalizer(lambda: [processes.finish(request, e, w) for e, w in started])
    return [e for e, _ in started]


@pytest.fixture(scope="module")
def containerd_engines(request) -> list[harness.Engine]:
    """Two Docker 28 engines on the containerd image store, nothing built on either."""
    return _engines(request, 2, "28-containerd", "cache-ctd-")


@pytest.fixture(scope="module")
def classic_engine(request) -> harness.Engine:
    """A Docker 28 engine on the classic store."""
    return _engines(request, 1, "28-classic", "cache-cls-")[0]


@pytest.fixture(scope="module")
def system_engine(request) -> harness.Engine:
    """The machine's docker.io (Debian 12: 20.10, BuildKit 0.8), classic store."""
    return _engines(request, 1, "system", "cache-sys-")[0]


@pytest.fixture(scope="module")
def registry(request) -> harness_registry.Registry:
    with processes.running(request, "docker-registry", lambda d: harness_registry.start_registry(
            d, user=REGISTRY_USER, password=REGISTRY_PASSWORD)) as reg:
        yield reg


@pytest.fixture
def sftp_store(monkeypatch, sshd, tmp_path) -> Path:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    shutil.copy(sshd.known_hosts, home / ".ssh" / "known_hosts")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AIRFLOW_CONN_STORE", json.dumps(
        {"conn_type": "sftp", "host": sshd.host, "port": sshd.port, "login": sshd.user, "extra": {"key_file": sshd.client_key}}))
    remote = tmp_path / "remote"
    remote.mkdir()
    return remote


def oracle_context(tmp_path: Path, token: str, size: int = 64) -> str:
    """FROM scratch (identical on every engine), busybox copied in, a RUN step writing random bytes."""
    ctx = tmp_path / f"ctx-{token}"
    ctx.mkdir()
    shutil.copy(BUSYBOX, ctx / "busybox")
    (ctx / "Dockerfile").write_text(
        "FROM scratch\nCOPY busybox /bin/busybox\n"
        f'RUN ["/bin/busybox", "sh", "-c", "echo {token} > /token && /bin/busybox head -c {size} /dev/urandom '
        '| /bin/busybox od -An -tx1 > /rand"]\n'
    )
    return str(ctx)


def connect(monkeypatch, engine, conn_id: str, **extra) -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(
        {"conn_type": "buildkit", "host": f"docker://{engine.unix_url}", "extra": {"network": "none", **extra}}))
    return conn_id


def build(monkeypatch, engine, ctx: str, *, cache_from=None, cache_to=None, no_cache=False, rand=True, **extra) -> str:
    """Build on ``engine`` through the operator (templated fields and all); the image's random bytes."""
    conn_id = connect(monkeypatch, engine, f"bk_{secrets.token_hex(3)}", **extra)
    tag = f"cache/oracle:{secrets.token_hex(4)}"
    BuildArtifactOperator(task_id="b", context=ctx, image=tag, cache_from=cache_from, cache_to=cache_to,
                          no_cache=no_cache, buildkit_conn_id=conn_id).execute({})
    return rand_of(engine, tag) if rand else tag


def rand_of(engine, tag: str) -> str:
    with contextlib.closing(docker.DockerClient(base_url=engine.unix_url, version="auto", timeout=60)) as client:
        return client.containers.run(tag, [BUSYBOX, "cat", "/rand"], network_mode="none", remove=True).decode()


def oracle(monkeypatch, engines, tmp_path, cache_to, cache_from, **extra) -> tuple[str, str, str]:
    """(first build, second engine with the cache, second engine with no_cache=True)."""
    ctx = oracle_context(tmp_path, secrets.token_hex(6))
    first = build(monkeypatch, engines[0], ctx, cache_to=cache_to, **extra)
    reused = build(monkeypatch, engines[1], ctx, cache_from=cache_from, **extra)
    control = build(monkeypatch, engines[1], ctx, cache_from=cache_from, no_cache=True, **extra)
    return first, reused, control


def assert_reused(first: str, reused: str, control: str) -> None:
    assert len(first.split()) == 64
    assert reused == first, "the second engine ran the RUN step again: the cache was not used"
    assert control != first, "no_cache=True must run the step (else the oracle proves nothing)"


def test_local_directory_cache_moves_between_engines(monkeypatch, containerd_engines, tmp_path):
    cache = tmp_path / "cache"
    assert_reused(*oracle(monkeypatch, containerd_engines, tmp_path, f"type=local,dest={cache},mode=max", f"type=local,src={cache}"))
    index = json.loads((cache / "index.json").read_text())
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == ["latest"]
    assert (cache / "oci-layout").exists() and len(os.listdir(cache / "artiload" / "exports")) == 1


def test_s3_object_storage_cache_uploads_only_what_it_lacks(monkeypatch, containerd_engines, tmp_path, s3):
    location = f"s3://moto@{BUCKET}/cache/{secrets.token_hex(4)}"
    prefix = location.split(f"{BUCKET}/", 1)[1]
    ctx = oracle_context(tmp_path, secrets.token_hex(6))
    first = build(monkeypatch, containerd_engines[0], ctx, cache_to=location)
    blobs = [k for k in keys(s3, prefix + "/blobs/")]
    assert blobs and f"{prefix}/index.json" in keys(s3, prefix)
    reused = build(monkeypatch, containerd_engines[1], ctx, cache_from=location)
    control = build(monkeypatch, containerd_engines[1], ctx, cache_from=location, no_cache=True)
    assert_reused(first, reused, control)
    # the same build exported again by the first engine: its blobs are all there, none is uploaded again
    stamp = {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/blobs/")["Contents"]}
    time.sleep(1.1)  # S3 times have 1 s resolution
    build(monkeypatch, containerd_engines[0], ctx, cache_to=location)
    after = {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/blobs/")["Contents"]}
    assert after == stamp
    assert len(keys(s3, prefix + "/artiload/used/")) == len(stamp)  # each reuse is marked for the clean-up
    assert len(keys(s3, prefix + "/artiload/exports/")) == 2


def test_sftp_object_storage_cache(monkeypatch, containerd_engines, tmp_path, sftp_store):
    location = f"sftp://store@{sftp_store}/cache"
    assert_reused(*oracle(monkeypatch, containerd_engines, tmp_path, location, location))
    names = os.listdir(sftp_store / "cache" / "blobs" / "sha256")
    assert names and not [n for n in names if n.startswith(".")]  # temp names were moved into place


def test_registry_cache_with_credentials_from_a_connection(monkeypatch, containerd_engines, tmp_path, registry):
    monkeypatch.setenv("AIRFLOW_CONN_CACHE_REGISTRY", json.dumps(
        {"conn_type": "generic", "host": registry.host, "login": REGISTRY_USER, "password": REGISTRY_PASSWORD}))
    ref = f"{registry.host}/cache/oracle:{secrets.token_hex(3)}"
    assert_reused(*oracle(monkeypatch, containerd_engines, tmp_path, f"type=registry,ref={ref},mode=max",
                          f"type=registry,ref={ref}", registry_conn_ids="cache_registry"))
    accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"
    status, body = registry.get(f"/v2/{ref.split('/', 1)[1].replace(':', '/manifests/')}", accept=accept)
    assert status == 200 and json.loads(body)["layers"]  # the cache manifest, pushed with our credentials


def test_registry_cache_without_credentials_is_refused(monkeypatch, containerd_engines, tmp_path, registry):
    ctx = oracle_context(tmp_path, secrets.token_hex(6))
    with pytest.raises(BuildError, match="(?i)unauthorized|authentication|401"):
        build(monkeypatch, containerd_engines[0], ctx, cache_to=f"type=registry,ref={registry.host}/cache/noauth:1")


def test_s3_type_is_served_by_the_session_with_an_aws_connection(monkeypatch, containerd_engines, tmp_path, s3, s3_server):
    """buildx's type=s3 syntax; Docker's BuildKit has no S3 backend, so artiload serves it (credentials stay here)."""
    prefix = f"s3type/{secrets.token_hex(3)}"
    entry = {"type": "s3", "bucket": BUCKET, "region": "us-east-1", "prefix": prefix, "aws_conn_id": "moto",
             "endpoint_url": s3_server, "use_path_style": "true"}
    assert_reused(*oracle(monkeypatch, containerd_engines, tmp_path, {**entry, "mode": "max"}, entry))
    assert f"{prefix}/index.json" in keys(s3, prefix) and keys(s3, prefix + "/blobs/sha256/")


def test_concurrent_exports_to_one_location(monkeypatch, containerd_engines, tmp_path, s3):
    location = f"s3://moto@{BUCKET}/cache/{secrets.token_hex(4)}"
    prefix = location.split(f"{BUCKET}/", 1)[1]
    contexts = [oracle_context(tmp_path, f"writer{i}-{secrets.token_hex(3)}") for i in range(2)]
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def export(i: int) -> None:
        try:
            results[i] = build(monkeypatch, containerd_engines[i], contexts[i], cache_to=location)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=export, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(keys(s3, prefix + "/artiload/exports/")) == 2  # both exports recorded, neither lost
    index = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{prefix}/index.json")["Body"].read())
    assert len(index["manifests"]) == 1  # one whole index naming one export
    records = [json.loads(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read())["descriptor"]["digest"]
               for k in keys(s3, prefix + "/artiload/exports/")]
    assert len(set(records)) == 2 and index["manifests"][0]["digest"] in records
    blobs = {k.rsplit("/", 1)[1] for k in keys(s3, prefix + "/blobs/sha256/")}
    for digest in records:  # every blob of both exports is complete in the store
        manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{prefix}/blobs/sha256/{digest[7:]}")["Body"].read())
        assert {d["digest"][7:] for d in manifest["layers"] + [manifest["config"]]} <= blobs
    # the export that holds the tag is usable: its Dockerfile, built on the other engine, reuses it
    reused = [i for i in range(2) if build(monkeypatch, containerd_engines[1 - i], contexts[i], cache_from=location) == results[i]]
    assert len(reused) == 1


def test_index_replaced_while_being_read_is_read_again(monkeypatch, s3):
    """s3fs reads an object with a HEAD then a GET pinned to the HEAD's ETag; a concurrent export that
    replaces index.json between the two made the GET fail (FileExpired). The reader starts again."""
    location = f"s3://moto@{BUCKET}/cache/{secrets.token_hex(4)}"
    prefix = location.split(f"{BUCKET}/", 1)[1]
    store = open_store(location)
    first = {"schemaVersion": 2, "manifests": [{"digest": "sha256:" + "1" * 64, "annotations": {"x": "first"}}]}
    second = {"schemaVersion": 2, "manifests": [{"digest": "sha256:" + "2" * 64, "annotations": {"x": "second"}}]}
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/index.json", Body=json.dumps(first).encode())
    fs = store.at("index.json").fs
    real_open, replaced = fs.open, []

    def open_then_replace(path, mode="rb", **kwargs):
        handle = real_open(path, mode, **kwargs)  # the HEAD: size and ETag of the first version
        if path.endswith("index.json") and not replaced:
            replaced.append(path)  # another writer's export lands now
            s3.put_object(Bucket=BUCKET, Key=f"{prefix}/index.json", Body=json.dumps(second).encode())
        return handle

    monkeypatch.setattr(fs, "open", open_then_replace)
    assert store.read_index()["manifests"][0]["annotations"] == {"x": "second"}
    assert replaced  # the race happened, and the read survived it


def test_classic_store_refuses_cache_exports_before_building(monkeypatch, classic_engine, system_engine, tmp_path):
    ctx = oracle_context(tmp_path, secrets.token_hex(6))
    for engine in (classic_engine, system_engine):
        for cache_to in (f"type=local,dest={tmp_path / 'c'}", f"s3://moto@{BUCKET}/x", "type=registry,ref=127.0.0.1:9/x:1"):
            started = time.monotonic()
            with pytest.raises(BuildError) as err:
                build(monkeypatch, engine, ctx, cache_to=cache_to)
            text = str(err.value)
            assert "classic image store" in text and "containerd image store" in text
            assert "standalone BuildKit" in text and "type=inline" in text and "cache_to[0]" in text
            assert time.monotonic() - started < 10
        with contextlib.closing(docker.DockerClient(base_url=engine.unix_url, version="auto")) as client:
            assert not [i for i in client.images.list() if any(t.startswith("cache/oracle") for t in i.tags)]
        assert not (tmp_path / "c").exists()
        # inline is what such an engine exports: the build runs
        assert len(build(monkeypatch, engine, ctx, cache_to="type=inline").split()) == 64
        # without the hook's check, the daemon's own refusal is translated the same way
        hook = BuildKitHook(connect(monkeypatch, engine, "bk_raw"))
        plan = CachePlan.prepare(parse_cache(f"type=local,dest={tmp_path / 'raw'}", "cache_to"), open_store)
        request = BuildRequest(context=ctx, image="cache/raw:1", network="none", cache=plan)
        with pytest.raises(BuildError, match=r"has no 'local' cache exporter: .*containerd image store.*standalone BuildKit.*type=inline"):
            hook.client.solve(request)
        hook.close()


def test_which_imports_work_on_classic_engines(monkeypatch, containerd_engines, classic_engine, system_engine, tmp_path):
    """A cache exported by a containerd-store engine, imported by each classic-store engine's BuildKit."""
    cache = tmp_path / "cache"
    ctx = oracle_context(tmp_path, secrets.token_hex(6))
    first = build(monkeypatch, containerd_engines[0], ctx, cache_to=f"type=local,dest={cache},mode=max")
    # Docker 28 on the classic store: the same BuildKit, so the same cache keys; its import goes through the session
    assert build(monkeypatch, classic_engine, ctx, cache_from=f"type=local,src={cache}") == first
    # Docker 20.10 (BuildKit 0.8): the import is accepted and read through the session, but its older Dockerfile
    # frontend gives even COPY another cache key, so nothing matches and every step runs (seen on Debian 12)
    with structlog.testing.capture_logs() as logs:
        rebuilt = build(monkeypatch, system_engine, ctx, cache_from=f"type=local,src={cache}")
    lines = [e["event"] % tuple(e["positional_args"]) if e.get("positional_args") else str(e["event"]) for e in logs]
    assert any("importing cache manifest from local:" in line for line in lines)
    assert rebuilt != first


def test_inline_cache_from_a_classic_engine_through_a_registry(monkeypatch, containerd_engines, classic_engine, tmp_path, registry):
    """What a classic-store engine can export (inline) feeds another engine's build through a registry."""
    monkeypatch.setenv("AIRFLOW_CONN_CACHE_REGISTRY", json.dumps(
        {"conn_type": "generic", "host": registry.host, "login": REGISTRY_USER, "password": REGISTRY_PASSWORD}))
    ctx = oracle_context(tmp_path, secrets.token_hex(6))
    repo = f"{registry.host}/cache/inline"
    conn_id = connect(monkeypatch, classic_engine, "bk_inline")
    BuildArtifactOperator(task_id="b", context=ctx, image=f"{repo}:1", cache_to="type=inline", buildkit_conn_id=conn_id).execute({})
    first = rand_of(classic_engine, f"{repo}:1")
    with contextlib.closing(docker.DockerClient(base_url=classic_engine.unix_url, version="auto", timeout=120)) as client:
        out = client.images.push(repo, "1", auth_config={"username": REGISTRY_USER, "password": REGISTRY_PASSWORD})
    assert '"error"' not in out, out
    reused = build(monkeypatch, containerd_engines[1], ctx, cache_from=f"type=registry,ref={repo}:1",
                   registry_conn_ids="cache_registry")
    assert reused == first


def test_clean_up_keeps_what_the_latest_index_needs(monkeypatch, containerd_engines, tmp_path):
    cache = tmp_path / "cache"
    dest = f"type=local,dest={cache},mode=max"
    ctx_old = oracle_context(tmp_path, "old-" + secrets.token_hex(4), size=4096)
    ctx_new = oracle_context(tmp_path, "new-" + secrets.token_hex(4), size=4096)
    build(monkeypatch, containerd_engines[0], ctx_old, cache_to=dest)
    latest = build(monkeypatch, containerd_engines[0], ctx_new, cache_to=dest)
    blobs = cache / "blobs" / "sha256"
    before = set(os.listdir(blobs))
    # young: nothing goes, whatever references it
    assert BuildCacheCleanupOperator(task_id="c", location=str(cache), grace_period_hours=1).execute({})["removed"] == []
    long_ago = time.time() - 3 * 86400
    for path in list(blobs.iterdir()) + list((cache / "artiload" / "exports").iterdir()):
        os.utime(path, (long_ago, long_ago))
    result = BuildCacheCleanupOperator(task_id="c", location=str(cache), grace_period_hours=1).execute({})
    assert result["removed"] and result["bytes_freed"] > 0
    after = set(os.listdir(blobs))
    assert after < before and {d.split(":")[1] for d in result["removed"]} == before - after
    # what is left is enough: the newest build reused on the other engine
    assert build(monkeypatch, containerd_engines[1], ctx_new, cache_from=f"type=local,src={cache}") == latest


def test_import_reads_only_the_blobs_the_build_needs(monkeypatch, containerd_engines, tmp_path, s3):
    """Two RUN layers of 4 MB in the cache; a Dockerfile sharing only the first step fetches only that layer."""
    from airflow_provider_artiload.buildkit import cache_store

    read: dict[str, int] = {}
    real = cache_store.LayoutStore.read_range

    def counting(self, digest, offset, size, chunk=1 << 20):
        for data in real(self, digest, offset, size, chunk):
            read[digest] = read.get(digest, 0) + len(data)
            yield data

    monkeypatch.setattr(cache_store.LayoutStore, "read_range", counting)
    location = f"s3://moto@{BUCKET}/cache/{secrets.token_hex(4)}"
    token = secrets.token_hex(6)
    steps = [f'RUN ["/bin/busybox", "sh", "-c", "echo {token} && /bin/busybox head -c 4000000 /dev/urandom > /{name}"]\n'
             for name in ("first", "second", "other")]
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    shutil.copy(BUSYBOX, ctx / "busybox")
    head = "FROM scratch\nCOPY busybox /bin/busybox\n"
    (ctx / "Dockerfile").write_text(head + steps[0] + steps[1])
    build(monkeypatch, containerd_engines[0], str(ctx), cache_to=location, rand=False)  # a bare location: type=local
    (ctx / "Dockerfile").write_text(head + steps[0] + steps[2])
    read.clear()
    build(monkeypatch, containerd_engines[1], str(ctx), cache_from=location, rand=False)
    big = {d: n for d, n in read.items() if n > 3_000_000}  # busybox's layer is about 1 MB
    assert len(big) == 1 and 3_900_000 < sum(big.values()) < 4_200_000, read  # the first RUN layer, not the second
    assert sum(read.values()) < 6_500_000  # plus the busybox layer and small JSON
