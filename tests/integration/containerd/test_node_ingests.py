"""Nothing left behind on nodes (issue 16): a failed node load aborts its partial write, or a retry resumes it.

A partial write is a containerd *ingest*: the bytes of a blob not yet committed, kept under its ref outside any
lease (containerd expires such an ingest after 24 hours). A load cut by its connection keeps it, for a retry to
resume; the retry consumes it. A load of a bad archive aborts it: nothing will resume it. On containerd 1.6 and
2.x (the ``containerd`` fixture).
"""

from __future__ import annotations

import os
import secrets

import pytest

import harness_containerd as h
from airflow_provider_artiload.exceptions import ArchiveError, ArtiloadError
from airflow_provider_artiload.transfer.node.target import NodeTarget
from airflow_provider_artiload.transfer.plan import LoadOptions
from airflow_provider_artiload.transfer.sources import SourceInfo
from tests.integration.containerd.test_node_load import chunks, images, log, no_artiload_lease, oci_bytes


def ingests(containerd) -> list[str]:
    """The refs of artiload's unfinished writes on the node (``ctr content active``)."""
    return [line.split()[0] for line in containerd.ctr("content", "active").stdout.splitlines()[1:]
            if line.startswith("artiload-")]


def test_a_bad_archive_cut_inside_a_blob_leaves_no_ingest(containerd, unix_client, tmp_path):
    client, _ = unix_client
    tag = secrets.token_hex(4)
    image = h.make_image([h.layer_tar({"big.bin": os.urandom(16 << 20)})])
    data = oci_bytes(tmp_path, image, f"docker.io/library/ingest:{tag}")
    layer = image.blobs[image.layers[0][0]["digest"]]
    inside = data.index(layer[: 1 << 10]) + len(layer) // 2  # the archive ends halfway through the layer
    before = set(ingests(containerd))
    with pytest.raises(ArchiveError, match="truncated"):
        NodeTarget(client).load(chunks(data[:inside]), SourceInfo(label="truncated"), LoadOptions(), log)
    assert f"ingest:{tag}" not in images(containerd) and no_artiload_lease(containerd)
    assert set(ingests(containerd)) - before == set()


def test_a_cut_load_keeps_its_ingest_for_the_retry_which_consumes_it(containerd, ssh_client, tmp_path):
    client, dials = ssh_client
    tag = secrets.token_hex(4)
    image = h.make_image([h.layer_tar({"big.bin": os.urandom(32 << 20)})])
    data = oci_bytes(tmp_path, image, f"docker.io/library/ingest-cut:{tag}")
    ref = f"artiload-{image.layers[0][0]['digest']}"
    cut = {"done": False}

    def maybe_cut(position: int) -> None:
        if position >= len(data) // 2 and not cut["done"]:
            cut["done"] = True
            dials.cut()

    loader = NodeTarget(client)
    with pytest.raises(ArtiloadError):
        loader.load(chunks(data, maybe_cut), SourceInfo(label="cut"), LoadOptions(), log)
    assert no_artiload_lease(containerd)
    assert ref in ingests(containerd)  # kept, for the retry
    out = loader.load(chunks(data), SourceInfo(label="retry"), LoadOptions(), log)
    assert out.bytes_sent < 0.75 * len(data)  # resumed, not sent again
    assert ref not in ingests(containerd) and no_artiload_lease(containerd)
    assert client.images.get(f"docker.io/library/ingest-cut:{tag}").target.digest == image.manifest_digest
