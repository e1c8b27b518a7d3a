"""NodeTarget's planning, the member splitter and ContainerdHook's settings, without a daemon.

A fake client stands in for containerd where only its answers matter (what
images and blobs it reports); the real protocol is tested in
tests/integration/containerd/test_node_load.py.
"""

from __future__ import annotations

import logging
import random
from types import SimpleNamespace

import pytest

from airflow_provider_artiload.containerd.images import Descriptor, ImageRecord
from airflow_provider_artiload.containerd.content import BlobInfo
from airflow_provider_artiload.transfer.node.members import member_events
from airflow_provider_artiload.transfer.node.target import NodeTarget
from airflow_provider_artiload.containerd.stream import ref_for
from airflow_provider_artiload.oci.archive import ArchiveScanner
from airflow_provider_artiload.exceptions import ConnectError, EndpointError
from airflow_provider_artiload.hooks.containerd import ContainerdHook
from airflow_provider_artiload.oci.image import Image, Layer
from airflow_provider_artiload.transfer.plan import LoadOptions, Send, Skip, Unreachable
from airflow_provider_artiload.transfer.sources import SourceInfo
from tests.unit.archives import chunked, docker_archive, layer_tar

log = logging.getLogger("test_node")
A, B, C = ("sha256:" + ch * 64 for ch in "abc")


class FakeImages:
    def __init__(self, records, broken):
        self.records = list(records)
        self.broken = broken
        self.set_calls = []

    def list(self, filters=()):
        if self.broken:
            raise ConnectError("cannot reach containerd at unix:///fake.sock")
        return self.records

    def set(self, name, target, labels=None):
        self.set_calls.append((name, target.digest, dict(labels or {})))


class FakeContent:
    def __init__(self, blobs):
        self.blobs = set(blobs)

    def info(self, digest):
        return BlobInfo(digest, 1) if digest in self.blobs else None


class FakeClient:
    """Only what planning asks: image records and blob presence."""

    where = "unix:///fake.sock"
    namespace = "k8s.io"

    def __init__(self, records=(), blobs=(), broken=False):
        self.images = FakeImages(records, broken)
        self.content = FakeContent(blobs)
        self.introspection = SimpleNamespace(platform=lambda: ("linux", "amd64", ""))  # what containerd's plugins serve

    @property
    def set_calls(self):
        return self.images.set_calls


def record(name, digest):
    return ImageRecord(name, Descriptor("application/vnd.oci.image.manifest.v1+json", digest, 10))


def image():
    return Image(config_digest=C, layers=(Layer(A, A, path="a/layer.tar"), Layer(B, B, path="b/layer.tar")), manifest_digest=A)


def test_plan_skips_when_any_record_targets_the_image():
    loader = NodeTarget(FakeClient([record("docker.io/library/other:1", B)], blobs={B}))
    plan = loader.plan(SourceInfo("x", ids={"containerd": B}), LoadOptions(tags=("app:1",)), log)
    assert isinstance(plan, Skip) and plan.target is loader and plan.store == "containerd" and plan.image_id == B


def test_plan_sends_when_the_record_outlived_its_content():
    loader = NodeTarget(FakeClient([record("docker.io/library/other:1", B)], blobs=set()))
    plan = loader.plan(SourceInfo("x", ids={"containerd": B}), LoadOptions(tags=("app:1",)), log)
    assert isinstance(plan, Send)


def test_plan_sends_counting_the_layer_blobs_present():
    loader = NodeTarget(FakeClient(blobs={A}))
    plan = loader.plan(SourceInfo("x", image=image()), LoadOptions(), log)
    assert isinstance(plan, Send) and plan.have == 1 and plan.omit == frozenset() and plan.target is loader


def test_plan_without_skip_existing_sends_and_a_broken_node_is_unreachable():
    present = FakeClient([record("n", B)])
    assert isinstance(NodeTarget(present).plan(SourceInfo("x", ids={"containerd": B}), LoadOptions(skip_existing=False), log), Send)
    plan = NodeTarget(FakeClient(broken=True)).plan(SourceInfo("x", ids={"containerd": B}), LoadOptions(), log)
    assert isinstance(plan, Unreachable) and "fake.sock" in str(plan.error)


def test_tag_image_names_the_record_fully_with_the_cri_label():
    client = FakeClient([record("docker.io/library/app:1", B)])
    NodeTarget(client, pin=False).tag(B, "app:2")
    assert client.set_calls == [("docker.io/library/app:2", B, {"io.cri-containerd.image": "managed"})]


def test_tag_image_pins_in_k8s_io_by_default():
    client = FakeClient([record("docker.io/library/app:1", B)])
    NodeTarget(client).tag(B, "app:2")
    labels = {"io.cri-containerd.image": "managed", "io.cri-containerd.pinned": "pinned"}
    assert client.set_calls == [("docker.io/library/app:2", B, labels)]


@pytest.mark.parametrize("seed", range(5))
def test_member_events_give_each_members_bytes_exactly(seed):
    layers = [layer_tar({"f": bytes(random.Random(seed + i).randbytes(3000 + 700 * i))}) for i in range(3)]
    data, _ = docker_archive(layers)
    sizes = [random.Random(seed).randint(1, 4096) for _ in range(7)]
    got, open_ = {}, set()
    scanner = ArchiveScanner()
    for kind, member, piece in member_events(chunked(data, sizes), scanner):
        if kind == "start":
            open_.add(member.name)
            got[member.name] = b""
        elif kind == "data":
            assert member.name in open_
            got[member.name] += bytes(piece)
        else:
            open_.remove(member.name)
    scanner.finish()
    assert not open_
    for i, layer in enumerate(layers):
        assert got[f"{i:064x}/layer.tar"] == layer


def test_write_refs_are_deterministic():
    assert ref_for(A, "blobs/sha256/x", 5) == f"artiload-{A}"
    assert ref_for(None, "0/layer.tar", 5) == ref_for(None, "0/layer.tar", 5) != ref_for(None, "0/layer.tar", 6)


def _hook(extra):
    hook = ContainerdHook("node")
    conn = SimpleNamespace(conn_id="node", host="unix:///run/k3s/containerd/containerd.sock", port=None, login=None,
                           password=None, extra_dejson=extra)
    hook.get_connection = lambda conn_id: conn  # type: ignore[method-assign]
    return hook


def test_hook_reads_its_extras_with_defaults_and_connects_lazily():
    hook = _hook({})
    assert "client" not in hook.__dict__  # nothing built at construction
    assert hook.settings == {"namespace": "k8s.io", "snapshotter": "overlayfs", "platform": None, "timeout": 60.0,
                             "pin": True}
    assert hook.endpoint.url == "unix:///run/k3s/containerd/containerd.sock"
    custom = _hook({"namespace": "default", "snapshotter": "native", "platform": "linux/arm64/v8"})
    assert custom.settings["namespace"] == "default" and custom.settings["platform"] == "linux/arm64/v8"
    assert custom.target.snapshotter == "native" and custom.target.platform == "linux/arm64/v8"
    custom.close()


@pytest.mark.parametrize("extra", [{"platform": "amd64"}, {"namespace": "bad name"}, {"snapshotter": "../x"}])
def test_hook_refuses_bad_extras_naming_the_value(extra):
    with pytest.raises(EndpointError, match="connection 'node'"):
        _hook(extra).settings


def test_hook_identity():
    assert (ContainerdHook.conn_type, ContainerdHook.conn_name_attr, ContainerdHook.default_conn_name) == (
        "containerd", "containerd_conn_id", "containerd_default")
