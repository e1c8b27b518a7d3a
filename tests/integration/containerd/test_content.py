"""Blobs in and out of a real containerd: verified writes, resume after a cut, leases, over unix and SSH."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from airflow_provider_artiload.exceptions import ArchiveError, DigestMismatch, TransferError


def blob(size: int) -> tuple[bytes, str]:
    data = os.urandom(size)
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


def reader(data: bytes, chunk: int = 256 * 1024, on_chunk=None):
    """``open_at`` over bytes in memory; ``on_chunk(position)`` runs before each chunk."""
    def open_at(offset: int):
        for start in range(offset, len(data), chunk):
            if on_chunk:
                on_chunk(start)
            yield data[start : start + chunk]
    return open_at


def ctr_digests(containerd, what: str) -> str:
    return containerd.ctr(what, "ls").stdout


def test_version_and_namespaces(containerd, unix_client):
    client, _ = unix_client
    version = client.version()
    assert version.version.lstrip("v").startswith(containerd.version), version
    with client.leases.lease():  # containerd creates the namespace on its first write
        pass
    assert client.has_namespace() and "k8s.io" in client.namespaces()
    assert not client.has_namespace("no-such-namespace")


def test_written_blob_is_in_the_store_and_reads_back(containerd, any_client):
    client, _ = any_client
    data, digest = blob(3 << 20)
    assert client.content.info(digest) is None
    with client.leases.lease():
        sent = client.content.write(f"test-{digest}", digest, len(data), reader(data), {"artiload.test": "1"})
        assert sent == len(data)
        info = client.content.info(digest)
        assert info is not None and info.size == len(data) and info.labels == {"artiload.test": "1"}
        assert digest in ctr_digests(containerd, "content")
        assert hashlib.sha256(b"".join(client.content.read(digest))).hexdigest() == digest.split(":")[1]
        assert client.content.write(f"test-{digest}", digest, len(data), reader(data)) == 0  # there already


def test_a_cut_write_resumes_from_what_containerd_kept(containerd, any_client):
    client, dials = any_client
    data, digest = blob(12 << 20)
    ref = f"test-resume-{digest}"
    with client.leases.lease():
        cut = reader(data, on_chunk=lambda pos: dials.cut() if pos >= len(data) // 2 else None)
        with pytest.raises(TransferError):
            client.content.write(ref, digest, len(data), cut)
        assert client.content.info(digest) is None
        status, previous = None, None
        for _ in range(50):  # the server notices the cut, writes what it had received, and releases the ref
            status = client.content.status(ref)
            if status is not None and status.offset and previous is not None and status.offset == previous.offset:
                break
            previous = status
            time.sleep(0.2)
        assert status is not None and 0 < status.offset <= len(data) // 2 + (1 << 20), status
        sent = client.content.write(ref, digest, len(data), reader(data))
        # Resumed, not restarted: from at least what was seen kept. Under CI's load, 1.6 reported
        # 4 MiB when first polled and had kept 5 MiB by the time the resume asked.
        assert 0 < sent <= len(data) - status.offset, (sent, status)
        assert client.content.info(digest).size == len(data)


def test_wrong_digest_is_refused_and_leaves_nothing(containerd, unix_client):
    client, _ = unix_client
    data, digest = blob(2 << 20)
    _, other = blob(16)
    with client.leases.lease():
        with pytest.raises(DigestMismatch, match="unexpected commit digest"):
            client.content.write(f"test-{other}", other, len(data), reader(data))
        assert client.content.info(other) is None and client.content.info(digest) is None
        assert client.content.status(f"test-{other}") is None  # the bad bytes are not kept for a resume
        with pytest.raises(ArchiveError, match="ended after"):
            client.content.write(f"test-short-{digest}", digest, len(data) + 10, reader(data))
        assert client.content.info(digest) is None


def test_lease_is_gone_after_the_block_even_when_it_fails(containerd, unix_client):
    client, _ = unix_client
    with pytest.raises(RuntimeError):
        with client.leases.lease() as lease_id:
            assert lease_id in containerd.ctr("leases", "ls").stdout
            assert client.leases.current == lease_id
            raise RuntimeError("the load failed")
    assert lease_id not in containerd.ctr("leases", "ls").stdout
    assert client.leases.current is None and lease_id not in client.leases.list()


def test_throughput_is_reported(containerd, any_client, request):
    """Not a benchmark: a 64 MiB write, timed, so regressions show in the test log."""
    client, _ = any_client
    data, digest = blob(64 << 20)
    with client.leases.lease():
        started = time.monotonic()
        client.content.write(f"test-{digest}", digest, len(data), reader(data, chunk=1 << 20))
        seconds = time.monotonic() - started
        client.content.delete(digest)
    print(f"\n{request.node.name}: {len(data) / seconds / 1e6:.0f} MB/s")


def test_concurrent_writers_of_one_blob_send_it_once(containerd, unix_client):
    """Loads sharing a layer race for its ref: one writes, the others wait for the lock and find the blob.

    Each writer keeps its lease until all have written, as concurrent loads do
    until their image records hold the blob: a lease deleted early lets
    containerd's GC take the blob, and the next writer rightly sends it again
    (seen on 1.6, where GC runs right after a lease delete).
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    client, _ = unix_client
    data, digest = blob(8 << 20)
    all_written = threading.Barrier(8, timeout=120)

    def write(_: int) -> tuple[int, int | None]:
        with client.leases.lease():
            sent = client.content.write(f"test-shared-{digest}", digest, len(data), reader(data))
            all_written.wait()
            info = client.content.info(digest)
            return sent, info.size if info else None

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(write, range(8)))
    sent = [s for s, _ in results]
    assert [size for _, size in results] == [len(data)] * 8
    assert sum(sent) == len(data) and sorted(sent)[-1] == len(data), sent
