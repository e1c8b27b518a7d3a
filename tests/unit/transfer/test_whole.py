"""Issue 16, item 5: an image that lands on an engine is whole, checked by the engine target itself (mock engine).

Docker 28's containerd store records an image from a thin archive even when
it lacks a left-out blob under that digest (it held the layer only as a
snapshot, from a differently compressed blob). ``GET /images/{id}/json?manifests=1``
says so (``Available``); the real engines are in
tests/integration/test_cross_store.py.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import unquote

from airflow_provider_artiload import transfer
from airflow_provider_artiload.engine.client import EngineClient
from airflow_provider_artiload.oci.archive import ArchiveScanner
from airflow_provider_artiload.transfer.engine import EngineTarget
from airflow_provider_artiload.transfer.plan import LoadOptions, Send
from airflow_provider_artiload.transfer.sources import FileSource
from airflow_provider_artiload.transport.mock import MockDialer, Request, Response
from tests.unit.archives import layer_tar, oci_archive

LOG = logging.getLogger("test")
CONTAINERD_INFO = {"DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]]}


class Store28:
    """A Docker 28 containerd store, as far as a load needs: it records what an archive names, whole or not."""

    def __init__(self, base: list[str], held_blobs: set[str], api: str = "1.51") -> None:
        self.images: dict[str, dict] = {"sha256:" + "e" * 64: {"layers": base, "tags": ["base:1"], "available": True}}
        self.held = set(held_blobs)
        self.api = api
        self.loads: list[bytes] = []
        self.removed: list[str] = []

    def __call__(self, request: Request) -> Response:
        path, _, query = request.path.partition("?")
        if path == "/info":
            return self.json(CONTAINERD_INFO)
        if path == "/version":
            return self.json({"ApiVersion": self.api})
        if path == "/images/json":
            return self.json([{"Id": i} for i in self.images])
        if path.startswith("/images/") and path.endswith("/json"):
            name = unquote(path[len("/images/") : -len("/json")])
            image_id = next((i for i, im in self.images.items() if i == name or name in im["tags"]), None)
            if image_id is None:
                return Response(404, json.dumps({"message": f"No such image: {name}"}).encode())
            image = self.images[image_id]
            reply = {"Id": image_id, "RepoTags": image["tags"], "RootFS": {"Layers": image["layers"]}}
            if "manifests=1" in query and self.api >= "1.48":
                reply["Manifests"] = [{"ID": image_id, "Kind": "image", "Available": image["available"]}]
            return self.json(reply)
        if path == "/images/load":
            self.loads.append(request.body)
            self.load(request.body)
            return Response(body=b'{"stream":"Loaded image\\n"}\n', chunked=True)
        if path.endswith("/tag"):
            params = dict(p.split("=", 1) for p in query.split("&"))
            self.images[unquote(path[len("/images/") : -len("/tag")])]["tags"].append(f"{unquote(params['repo'])}:{params['tag']}")
            return Response(201)
        if request.method == "DELETE":
            image_id = unquote(path[len("/images/") :])
            self.removed.append(image_id)
            del self.images[image_id]
            return Response(200, b"[]")
        return Response(404, b'{"message": "unexpected"}')

    def load(self, body: bytes) -> None:
        scanner = ArchiveScanner()
        scanner.feed(body)
        index = scanner.finish()
        image = index.image()
        self.held |= {"sha256:" + n.rsplit("/", 1)[1] for n in index.members if n.startswith("blobs/sha256/")}
        [entry] = json.loads(index.metadata["index.json"])["manifests"]
        tags = [entry["annotations"]["io.containerd.image.name"]] if "annotations" in entry else []
        available = all(layer.digest in self.held for layer in image.layers)
        self.images[image.manifest_digest] = {"layers": image.diff_ids, "tags": tags, "available": available}

    @staticmethod
    def json(value: object) -> Response:
        return Response(body=json.dumps(value).encode())


def archive(tmp_path) -> tuple[FileSource, dict[str, str], list[str]]:
    layers = [layer_tar({"base": b"1"}), layer_tar({"app": b"2"})]
    data, digests = oci_archive(layers, compress=None, legacy_manifest=True, tags=["docker.io/library/app:1"])
    path = tmp_path / "a.tar"
    path.write_bytes(data)
    source = FileSource(str(path))
    return source, digests, source.info().diff_ids


def test_a_thin_load_the_store_cannot_complete_is_removed_and_redone_in_full(tmp_path):
    """The bug: the store holds the base layer as a snapshot of a gzip blob; the archive's blob is uncompressed."""
    source, digests, diff_ids = archive(tmp_path)
    engine = Store28(diff_ids[:1], held_blobs={"sha256:" + "9" * 64})  # the base's gzip blob, not the archive's
    [outcome] = transfer.load(source, [EngineTarget(EngineClient(MockDialer(engine)))], LoadOptions(tags=("app:2",)), LOG)
    assert outcome.mode == "full" and outcome.image_id == digests["manifest"]
    assert len(engine.loads) == 2 and engine.removed == [digests["manifest"]]  # the unnamed thin record, removed
    image = engine.images[digests["manifest"]]
    assert image["available"] and sorted(image["tags"]) == ["app:2", "docker.io/library/app:1"]


def test_a_thin_load_that_is_whole_is_named_afterwards(tmp_path):
    source, digests, diff_ids = archive(tmp_path)
    info = source.info()
    engine = Store28(diff_ids[:1], held_blobs={info.image.layers[0].digest})  # the same blob: provably held
    [outcome] = transfer.load(source, [EngineTarget(EngineClient(MockDialer(engine)))], LoadOptions(), LOG)
    assert outcome.mode == "delta" and len(engine.loads) == 1 and not engine.removed
    assert engine.images[digests["manifest"]]["tags"] == ["docker.io/library/app:1"]  # sent unnamed, named once whole


def test_a_store_that_cannot_say_gets_no_thin_archive_and_an_incomplete_image_is_not_skipped(tmp_path):
    source, digests, diff_ids = archive(tmp_path)
    info = source.info()
    old = Store28(diff_ids[:1], held_blobs=set(), api="1.47")
    plan = EngineTarget(EngineClient(MockDialer(old))).plan(info, LoadOptions(), LOG)
    assert isinstance(plan, Send) and plan.mode == "full"
    broken = Store28(diff_ids[:1], held_blobs=set())
    broken.images[digests["manifest"]] = {"layers": diff_ids, "tags": ["app:1"], "available": False}
    plan = EngineTarget(EngineClient(MockDialer(broken))).plan(info, LoadOptions(), LOG)
    assert isinstance(plan, Send) and plan.mode == "full"  # not skipped, not thin: made whole
