"""A skip on a node only when the node holds the whole image (issue 16, item 5), on containerd 1.6 and 2.x.

A record can outlive its content: here a layer blob is deleted by hand under the record. The next load must
not skip; it sends the image again, and the node can run and export it afterwards.
"""

from __future__ import annotations

import secrets

import harness_containerd as h
from airflow_provider_artiload.transfer.node.target import NodeTarget
from airflow_provider_artiload.transfer.plan import LoadOptions, Send, Skip
from airflow_provider_artiload.transfer.sources import FileSource
from tests.integration.containerd.test_node_load import chunks, log, run_cat


def test_a_record_without_its_content_is_not_skipped(containerd, unix_client, tmp_path):
    client, _ = unix_client
    tag = secrets.token_hex(4)
    base = h.busybox_layer({"etc/base": secrets.token_bytes(16)})
    image = h.make_image([base, h.layer_tar({"hello.txt": f"whole {tag}\n".encode()})], gzipped=[True, False])
    path = tmp_path / "whole.tar"
    h.write_oci_layout(image, path, f"docker.io/library/whole:{tag}")
    options = LoadOptions(tags=(f"whole:{tag}",))
    target = NodeTarget(client)

    source = FileSource(str(path))
    info = source.info()
    target.load(chunks(path.read_bytes()), info, options, log)
    assert isinstance(target.plan(info, options, log), Skip)  # whole: a repeat load sends nothing

    top = image.layers[-1][0]["digest"]
    assert client.content.delete(top)  # the record stays; its top layer's blob is gone
    assert client.images.get(f"docker.io/library/whole:{tag}") is not None

    plan = target.plan(info, options, log)
    assert isinstance(plan, Send), "a record whose content is incomplete must not be skipped"
    out = target.load(chunks(path.read_bytes()), info, options, log)
    # containerd may still hold the deleted bytes outside the namespace until its GC runs: then its writer links
    # them back without needing them sent. Either way the namespace holds the blob again.
    assert out.mode in ("full", "delta")
    assert client.content.info(top) is not None  # the missing blob is back
    assert run_cat(containerd, f"docker.io/library/whole:{tag}", "/hello.txt") == f"whole {tag}\n"
