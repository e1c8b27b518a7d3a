"""The containerd client's logic that needs no daemon: chain IDs, chunking, resume offsets, error translation."""

from __future__ import annotations

import hashlib

import grpc
import pytest

from airflow_provider_artiload.containerd import ContainerdClient, ContainerdError, chain_ids, manifest_gc_labels, skip
from airflow_provider_artiload.containerd.content import CHUNK, _rechunk
from airflow_provider_artiload.containerd.errors import BlobNotFound, translate
from airflow_provider_artiload.exceptions import ArchiveError, ConnectError, TransferError, TransferTimeout


def test_chain_ids_follow_the_oci_rule():
    a, b, c = ("sha256:" + ch * 64 for ch in "abc")
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()
    assert chain_ids([a, b, c]) == [a, ab, abc]
    assert chain_ids([]) == []


def test_rechunk_gives_bounded_messages_and_keeps_every_byte():
    data = bytes(range(256)) * 20000  # ~5 MB
    pieces = [data[:10], data[10 : 3 * CHUNK], data[3 * CHUNK :]]
    out = list(_rechunk(pieces))
    assert b"".join(out) == data and all(len(p) <= CHUNK for p in out) and len(out) == -(-len(data) // CHUNK)


def test_skip_drops_exactly_the_offset():
    chunks = [b"abc", b"defg", b"hi"]
    assert b"".join(bytes(c) for c in skip(chunks, 5)) == b"fghi"
    assert b"".join(bytes(c) for c in skip(chunks, 0)) == b"abcdefghi"
    assert list(skip(chunks, 9)) == []


def test_manifest_gc_labels_name_config_and_layers():
    assert manifest_gc_labels("sha256:c", ["sha256:l0", "sha256:l1"]) == {
        "containerd.io/gc.ref.content.config": "sha256:c",
        "containerd.io/gc.ref.content.l.0": "sha256:l0",
        "containerd.io/gc.ref.content.l.1": "sha256:l1",
    }


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("code", "details", "started", "expected"),
    [
        (grpc.StatusCode.UNAVAILABLE, "connection refused", False, ConnectError),
        (grpc.StatusCode.UNAVAILABLE, "Socket closed", True, TransferError),
        (grpc.StatusCode.UNAVAILABLE, "ref k8s.io/1/x locked for 1s", True, ContainerdError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "", False, TransferTimeout),
        (grpc.StatusCode.NOT_FOUND, "content digest sha256:ab: not found", False, BlobNotFound),
        (grpc.StatusCode.FAILED_PRECONDITION, "unexpected commit digest", True, ContainerdError),
    ],
)
def test_grpc_errors_become_ours_and_name_the_endpoint(code, details, started, expected):
    error = translate(FakeRpcError(code, details), where="ssh://node/run/containerd.sock", what="Write", started=started)
    assert type(error) is expected
    assert "ssh://node/run/containerd.sock" in str(error)
    if isinstance(error, ContainerdError):
        assert error.code == code.name


def test_construction_connects_to_nothing_and_bad_input_fails_before_io():
    def dial():
        raise AssertionError("must not dial")

    client = ContainerdClient(dial, where="unix:///nowhere")
    with pytest.raises(ArchiveError, match="sha256"):
        client.content.write("ref", "md5:abc", 3, lambda off: [b"abc"])
    with pytest.raises(ArchiveError, match="size"):
        client.content.write("ref", "sha256:" + "0" * 64, -1, lambda off: [])
    with pytest.raises(ContainerdError, match="namespace"):
        ContainerdClient(dial, namespace="")
    client.close()
