"""Issue 16, item 5: after any load (full, delta, skip) on every store, the image on the target is whole.

Whole means: ``docker image inspect`` shows its OS, architecture, layers and
config; ``docker save`` of it gives an archive holding every blob the image
names, each hashing to its digest and each layer to its diff ID; and that
archive loads into an engine of a third kind and runs. Every pair of engine
kinds, over SSH, with the base layer already on the target (so the planner
leaves it out where it can): in particular a Docker 28 classic save (an
uncompressed layer blob) into a Docker 28 containerd store that holds the
base as a gzip blob, the case that used to land an image without content.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid

import docker
import pytest

from airflow_provider_artiload.oci.verify import VerifiedArchive, check_layers, every_member
from airflow_provider_artiload.oci.archive import ArchiveScanner
from tests.integration.test_cross_store import KINDS, PAIRS, connect, over_ssh, run
import harness  # noqa: E402  (tests/conftest.py put scripts/ on sys.path)

pytestmark = pytest.mark.integration


def assert_whole(monkeypatch, engine, tag: str, origin: str, elsewhere) -> None:
    with contextlib.closing(docker.DockerClient(base_url=engine.unix_url, version="auto")) as client:
        attrs = client.images.get(tag).attrs
    assert attrs["Os"] == "linux" and attrs["Architecture"], attrs
    assert attrs["RootFS"]["Layers"] and attrs["Config"], attrs
    # docker save of it: every blob and every layer, each hashing as the image says
    hook = connect(monkeypatch, "whole_check", engine.unix_url)
    with contextlib.closing(hook), tempfile.TemporaryFile() as out, hook.client.export_image(tag) as chunks:
        scanner = ArchiveScanner(expect=every_member)
        for chunk in VerifiedArchive(chunks, where=f"docker save {tag}"):
            scanner.feed(chunk)
            out.write(chunk)
        index = scanner.finish()
        image = index.image()
        index.check_complete()
        check_layers(index, image)
        assert len(image.layers) == len(attrs["RootFS"]["Layers"])
        out.seek(0)
        with contextlib.closing(docker.DockerClient(base_url=elsewhere.unix_url, version="auto")) as other:
            other.images.load(out.read())
    assert run(elsewhere, tag, "cat", "/origin") == f"made on {origin}\n".encode()


@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_every_load_leaves_a_whole_image_on_every_store(monkeypatch, engines_by_kind, sshd, tmp_path, source, target):
    """A fresh image (its top layer new everywhere) on the base every engine built for itself, so the base is
    left out where the planner can, and must be provably held: the classic -> containerd store case sends it
    thin, finds the image incomplete, removes it and loads it in full."""
    engine = engines_by_kind[target]
    elsewhere = engines_by_kind[next(k for k in KINDS if k not in (source, target))]
    made = f"whole/{source}-{uuid.uuid4().hex[:12]}:1"
    harness.build_image(engines_by_kind[source].socket_path, made,
                        f'FROM {harness.BASE_TAG}\nRUN echo "made on {source}" > /origin && echo {made} > /id\n')
    src = connect(monkeypatch, "whole_src", engines_by_kind[source].unix_url)
    artifact = src.save_image(made, str(tmp_path) + "/")
    src.close()
    hook = over_ssh(monkeypatch, sshd, engine, f"whole_{target.replace('-', '_')}")
    tag = f"whole-to-{target}/{made.split('/')[1]}"
    first = hook.load_archive(artifact, tags=[tag])
    assert first.mode in ("full", "delta") and first.layers_sent >= 1
    assert_whole(monkeypatch, engine, tag, source, elsewhere)
    again = hook.load_archive(artifact, tags=[tag + "-again"])
    assert again.mode == "skipped"
    assert_whole(monkeypatch, engine, tag + "-again", source, elsewhere)
