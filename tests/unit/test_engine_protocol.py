"""The Engine API client and load planning, byte for byte, against the mock transport (no engine).

The far end is a Python function (airflow_provider_artiload.transport.mock):
what real engines answer was observed on 20.10 and 28.5 (see
shared notes); the integration tests check the same paths against them.
"""

from __future__ import annotations

import json
import logging

import pytest

from airflow_provider_artiload import transfer
from urllib.parse import unquote
from airflow_provider_artiload.oci.archive import ArchiveScanner
from airflow_provider_artiload.engine.client import EngineClient
from airflow_provider_artiload.exceptions import DigestMismatch, EngineError, ImageNotFound
from airflow_provider_artiload.oci.image import chain_ids
from airflow_provider_artiload.oci.reframe import Framing, reframe
from airflow_provider_artiload.transfer.engine import EngineTarget
from airflow_provider_artiload.transfer.plan import LoadOptions, Send, Skip, Unreachable
from airflow_provider_artiload.transfer.sources import FileSource
from airflow_provider_artiload.transport.mock import MockDialer, Request, Response
from tests.unit.archives import docker_archive, layer_tar, oci_archive

LOG = logging.getLogger("test")
CLASSIC_INFO = {"DriverStatus": [["Backing Filesystem", "extfs"]]}
CONTAINERD_INFO = {"DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]]}


class FakeEngine:
    """Just enough of the Engine API: /info, images (json, inspect, tag), and loads that record the body."""

    def __init__(self, info: dict, images: dict[str, list[str]] | None = None, load_reply: list[dict] | None = None):
        self.info = info
        self.images = dict(images or {})  # id -> diff IDs
        self.load_reply = load_reply
        self.loaded: list[bytes] = []
        self.tags: dict[str, str] = {}
        self.register_on_load: str | None = None

    def __call__(self, request: Request) -> Response:
        path = request.path.split("?")[0]
        if path == "/info":
            return Response(body=json.dumps(self.info).encode())
        if path == "/version":  # 28.5: reports each manifest's availability (manifests=1), so thin loads are provable
            return Response(body=json.dumps({"ApiVersion": "1.51"}).encode())
        if path == "/images/json":
            return Response(body=json.dumps([{"Id": i} for i in self.images]).encode())
        if path.startswith("/images/") and path.endswith("/json"):
            name = unquote(path[len("/images/") : -len("/json")])
            image_id = self.tags.get(name, name)
            if image_id not in self.images:
                return Response(404, json.dumps({"message": f"No such image: {name}"}).encode())
            return Response(body=json.dumps({"Id": image_id, "RootFS": {"Layers": self.images[image_id]}}).encode())
        if path == "/images/load":
            self.loaded.append(request.body)
            if self.register_on_load:
                self.images[self.register_on_load] = []
            reply = self.load_reply or [{"stream": "Loaded image ID: x\n"}]
            return Response(body=b"".join(json.dumps(m).encode() + b"\n" for m in reply), chunked=True)
        if path.endswith("/tag"):
            query = dict(p.split("=", 1) for p in request.path.split("?", 1)[1].split("&"))
            self.tags[f"{query['repo']}:{query['tag']}"] = unquote(path[len("/images/") : -len("/tag")])
            return Response(201)
        return Response(404, b'{"message": "unexpected"}')


def client_for(engine: FakeEngine) -> EngineClient:
    return EngineClient(MockDialer(engine))


def test_inspect_of_a_missing_image_names_it_and_the_engine():
    with pytest.raises(ImageNotFound, match=r"mock://engine: inspect image 'app:1' failed \(404\): No such image: app:1"):
        client_for(FakeEngine(CLASSIC_INFO)).inspect_image("app:1")


def test_load_sends_the_archive_chunked_and_unchanged():
    engine = FakeEngine(CLASSIC_INFO)
    dialer = MockDialer(engine)
    EngineClient(dialer).load_image([b"abc", b"", b"defg"])
    [request] = dialer.requests
    assert request.method == "POST" and request.path == "/images/load?quiet=0"
    assert request.headers["transfer-encoding"] == "chunked" and request.body == b"abcdefg"


@pytest.mark.parametrize(
    ("reply", "error", "needle"),
    [
        ([{"errorDetail": {"message": "unexpected EOF"}, "error": "unexpected EOF"}], EngineError, "the archive is truncated"),
        ([{"error": "invalid diffID for layer 1: expected sha256:a, got sha256:b"}], DigestMismatch, "corrupt archive"),
        ([{"stream": "Loaded image: app:1\n"}, {"stream": "Error unpacking image app:1: apply layer error\n"}],
         EngineError, "Error unpacking image"),
    ],
)
def test_in_band_load_errors_raise_with_an_explanation(reply, error, needle):
    with pytest.raises(error, match=needle):
        client_for(FakeEngine(CLASSIC_INFO, load_reply=reply)).load_image([b"x"])


def file_source(tmp_path, data: bytes) -> FileSource:
    path = tmp_path / "a.tar"
    path.write_bytes(data)
    return FileSource(str(path))


def plan_target(client: EngineClient, info, options: LoadOptions, log):
    return EngineTarget(client).plan(info, options, log)


def test_plan_skips_by_the_id_each_store_gives_the_image(tmp_path):
    data, digests = oci_archive(compress="gzip")
    info = file_source(tmp_path, data).info()
    classic = FakeEngine(CLASSIC_INFO, {digests["config"]: []})
    containerd = FakeEngine(CONTAINERD_INFO, {digests["manifest"]: []})
    assert isinstance(plan := plan_target(client_for(classic), info, LoadOptions(), LOG), Skip)
    assert plan.image_id == digests["config"]
    assert isinstance(plan := plan_target(client_for(containerd), info, LoadOptions(), LOG), Skip)
    assert plan.image_id == digests["manifest"]
    # the classic engine's ID on a containerd-store engine means nothing: not skipped
    wrong = FakeEngine(CONTAINERD_INFO, {digests["config"]: []})
    assert isinstance(plan_target(client_for(wrong), info, LoadOptions(), LOG), Send)


def test_plan_leaves_out_the_bottom_layers_the_engine_has_on_either_store(tmp_path):
    layers = [layer_tar({"a": b"1"}), layer_tar({"b": b"2"}), layer_tar({"c": b"3"})]
    data, _ = oci_archive(layers, compress=None, legacy_manifest=True)
    info = file_source(tmp_path, data).info()
    base = {"sha256:" + "e" * 64: info.diff_ids[:2]}
    for engine_info in (CLASSIC_INFO, CONTAINERD_INFO):
        plan = plan_target(client_for(FakeEngine(engine_info, base)), info, LoadOptions(), LOG)
        assert isinstance(plan, Send) and plan.mode == "delta" and plan.have == 2
        assert plan.omit == frozenset(info.layer_names[:2])
        # in full, either store would skip the two layers it has unread: their diff IDs are checked on our side
        # (a containerd store only where it will unpack the image: it says its platform, see below)
        unchecked = frozenset({0, 1}) if engine_info is CLASSIC_INFO else frozenset({0, 1, 2})
        blobs = frozenset() if engine_info is CLASSIC_INFO else frozenset({0, 1, 2})
        assert plan.fallback == Send(plan.target, plan.store, have=2, unchecked=unchecked, unchecked_blobs=blobs)


def test_a_containerd_store_leaves_us_the_blob_digests_and_the_diff_ids_of_the_layers_it_will_not_unpack(tmp_path):
    layers = [layer_tar({"a": b"1"}), layer_tar({"b": b"2"}), layer_tar({"c": b"3"})]
    data, _ = oci_archive(layers, compress="gzip")
    info = file_source(tmp_path, data).info()
    base = {"sha256:" + "e" * 64: info.diff_ids[:2]}
    amd64 = {**CONTAINERD_INFO, "OSType": "linux", "Architecture": "x86_64"}  # what the engine says it runs on
    arm64 = {**CONTAINERD_INFO, "OSType": "linux", "Architecture": "aarch64"}
    own = EngineTarget(client_for(FakeEngine(amd64, base)))
    plan = own.plan(info, LoadOptions(), LOG)
    assert plan.unchecked == frozenset() and plan.unchecked_blobs == frozenset({0, 1, 2})  # thin: it unpacks the rest
    assert plan.fallback.unchecked == frozenset({0, 1}) and plan.fallback.unchecked_blobs == frozenset({0, 1, 2})
    # an engine of another platform would not unpack an amd64 image: every digest is checked here
    other = EngineTarget(client_for(FakeEngine(arm64, base)))
    everything = other.plan(info, LoadOptions(), LOG).fallback
    assert everything.unchecked == everything.unchecked_blobs == frozenset({0, 1, 2})
    # nor would it because its connection's platform extra says amd64: the engine's own word decides
    told = EngineTarget(client_for(FakeEngine(arm64, base)), platform="linux/amd64").plan(info, LoadOptions(), LOG)
    assert told.fallback.unchecked == frozenset({0, 1, 2})
    # nor an engine that does not say what it runs on
    unknown = EngineTarget(client_for(FakeEngine(CONTAINERD_INFO, base))).plan(info, LoadOptions(), LOG)
    assert unknown.fallback.unchecked == frozenset({0, 1, 2})
    # nor is a store kept with every platform's image
    kept = own.plan(info, LoadOptions(all_platforms=True), LOG).fallback
    assert kept.unchecked == kept.unchecked_blobs == frozenset({0, 1, 2})
    no_delta = plan_target(client_for(FakeEngine(CLASSIC_INFO, base)), info, LoadOptions(delta=False), LOG)
    assert isinstance(no_delta, Send) and no_delta.mode == "full" and no_delta.have == 2


def test_plan_of_an_unreachable_engine_keeps_the_error(tmp_path):
    data, _ = docker_archive()
    info = file_source(tmp_path, data).info()

    def down(request: Request) -> Response:
        return Response(500, b'{"message": "engine is shutting down"}')

    plan = plan_target(EngineClient(MockDialer(down)), info, LoadOptions(), LOG)
    assert isinstance(plan, Unreachable) and "shutting down" in str(plan.error)


def test_an_image_removed_while_the_engine_reads_it_is_not_found():
    """Docker 20.10 answers 500 "layer does not exist" for an image a concurrent removal is taking apart."""

    def removing(request: Request) -> Response:
        return Response(500, b'{"message": "layer does not exist"}')

    with pytest.raises(ImageNotFound, match="layer does not exist"):
        EngineClient(MockDialer(removing)).inspect_image("sha256:" + "a" * 64)

    def broken(request: Request) -> Response:
        return Response(500, b'{"message": "engine is shutting down"}')

    with pytest.raises(EngineError) as other:
        EngineClient(MockDialer(broken)).inspect_image("sha256:" + "a" * 64)
    assert not isinstance(other.value, ImageNotFound)


def test_a_classic_engine_gets_a_manifest_json_made_from_a_pure_oci_layout(tmp_path):
    data, digests = oci_archive(compress="gzip", legacy_manifest=False, tags=["docker.io/library/app:1"])
    engine = FakeEngine(CLASSIC_INFO)
    engine.register_on_load = digests["config"]
    [outcome] = transfer.load(file_source(tmp_path, data), [EngineTarget(client_for(engine))], LoadOptions(tags=("app:2",)), LOG)
    assert outcome.image_id == digests["config"] and outcome.mode == "full"
    assert engine.tags == {"app:2": digests["config"]}
    scanner = ArchiveScanner()
    scanner.feed(engine.loaded[0])
    sent = scanner.finish()
    [entry] = json.loads(sent.metadata["manifest.json"])
    assert entry["Config"] == "blobs/sha256/" + digests["config"].split(":")[1]
    assert sent.image().config_digest == digests["config"]


def test_a_containerd_store_engine_gets_the_blobs_unchanged_in_a_tar_artiload_wrote(tmp_path):
    """Issue 16: reframed, never forwarded; every blob byte for byte, so the image and its ID are the source's."""
    data, digests = oci_archive(compress="zstd")
    engine = FakeEngine(CONTAINERD_INFO)
    engine.register_on_load = digests["manifest"]
    [outcome] = transfer.load(file_source(tmp_path, data), [EngineTarget(client_for(engine))], LoadOptions(), LOG)
    assert outcome.image_id == digests["manifest"]
    source, sent = ArchiveScanner(), ArchiveScanner()
    source.feed(data)
    sent.feed(engine.loaded[0])
    source_index, sent_index = source.finish(), sent.finish()
    blobs = {n for n in source_index.members if n.startswith("blobs/")}
    assert blobs <= set(sent_index.members)
    for name in blobs:
        m, n = source_index.members[name], sent_index.members[name]
        assert engine.loaded[0][n.offset : n.offset + n.size] == data[m.offset : m.offset + m.size]
    assert sent_index.image().id_for("containerd") == digests["manifest"]


def test_a_thin_load_the_engine_turns_into_nothing_is_redone_in_full(tmp_path):
    layers = [layer_tar({"a": b"1"}), layer_tar({"b": b"2"})]
    data, digests = oci_archive(layers, compress=None, legacy_manifest=True)
    info = file_source(tmp_path, data).info()
    engine = FakeEngine(CLASSIC_INFO, {"sha256:" + "e" * 64: info.diff_ids[:1]})
    loads: list[int] = []

    original = engine.__call__

    def handler(request: Request) -> Response:
        if request.path.startswith("/images/load"):
            loads.append(len(request.body))
            if len(loads) == 2:  # the engine registers the image only from the full archive
                engine.images[digests["config"]] = []
        return original(request)

    [outcome] = transfer.load(file_source(tmp_path, data), [EngineTarget(EngineClient(MockDialer(handler)))], LoadOptions(), LOG)
    full = b"".join(bytes(p) for p in reframe([data], Framing()))  # the whole archive, as artiload writes it
    assert outcome.mode == "full" and loads[0] < loads[1] == len(full)


def test_chain_ids_match_what_engines_store():
    diffs = ["sha256:" + "a" * 64, "sha256:" + "b" * 64]
    assert chain_ids(diffs)[1] == "sha256:" + __import__("hashlib").sha256(f"{diffs[0]} {diffs[1]}".encode()).hexdigest()


def test_a_local_tarball_written_on_another_worker_is_named_as_such(tmp_path):
    from airflow_provider_artiload.artifacts import DockerArchive
    from airflow_provider_artiload.exceptions import ArchiveError

    gone = str(tmp_path / "x.tar")
    artifact = DockerArchive(path=gone, sha256="sha256:" + "0" * 64, size=1, image_id="sha256:" + "1" * 64, hostname="worker-a")
    with pytest.raises(ArchiveError) as elsewhere:
        FileSource(gone, artifact, here="worker-b").info()
    message = str(elsewhere.value)
    assert "on this worker (worker-b); it was written on worker-a" in message and "object-storage path" in message
    with pytest.raises(ArchiveError) as same:
        FileSource(gone, artifact, here="worker-a").info()
    assert str(same.value) == f"archive {gone} does not exist"


def test_a_plan_asks_the_engine_for_its_version_and_info_once(tmp_path):
    """Eight targets' uploads start once every plan is made: each extra request to a busy engine delays all."""
    layers = [layer_tar({"a": b"1"}), layer_tar({"b": b"2"})]
    data, _ = oci_archive(layers, compress="gzip")
    info = file_source(tmp_path, data).info()
    amd64 = {**CONTAINERD_INFO, "OSType": "linux", "Architecture": "x86_64"}
    engine = FakeEngine(amd64, {"sha256:" + "e" * 64: info.diff_ids[:1]})
    asked: list[str] = []

    def counting(request: Request) -> Response:
        asked.append(request.path.split("?")[0])
        return engine(request)

    plan = EngineTarget(EngineClient(MockDialer(counting))).plan(info, LoadOptions(), LOG)
    assert isinstance(plan, Send) and plan.mode == "delta"  # the path that reads both the platform and the API level
    assert asked.count("/version") == 1 and asked.count("/info") == 1, asked
