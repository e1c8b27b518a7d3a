"""Complete-or-absent tarball writes and verified, held-back reads."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from airflow_provider_artiload.exceptions import ArchiveError, DestinationError, DigestMismatch
from airflow_provider_artiload.storage import AtomicFile, read_chunks, remove_stale_temp_files
from airflow_provider_artiload.verify import VerifiedArchive
from tests.unit.archives import chunked, docker_archive


def test_file_appears_only_on_commit_and_is_owner_only(tmp_path):
    target = tmp_path / "img.tar"
    with AtomicFile(str(target)) as out:
        out.write(b"abc")
        assert not target.exists()
        assert len(os.listdir(tmp_path)) == 1  # only the temp file
        out.commit()
    assert target.read_bytes() == b"abc"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert out.sha256 == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert os.listdir(tmp_path) == ["img.tar"]


def test_failure_leaves_nothing_and_keeps_an_older_file(tmp_path):
    target = tmp_path / "img.tar"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with AtomicFile(str(target)) as out:
            out.write(b"new bytes")
            raise RuntimeError("stream broke")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["img.tar"]


def test_missing_directories_are_made_and_unusable_ones_named(tmp_path):
    with AtomicFile(str(tmp_path / "new" / "dir" / "x.tar")) as out:
        out.write(b"x")
        out.commit()
    assert (tmp_path / "new" / "dir" / "x.tar").read_bytes() == b"x"
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(DestinationError, match=r"cannot write .*file/x.tar: cannot create .*file: File exists"):
        AtomicFile(str(tmp_path / "file" / "x.tar")).__enter__()


def test_full_disk_is_named_before_writing(tmp_path):
    with pytest.raises(DestinationError, match=r"not enough space for .*x\.tar: needs about"):
        AtomicFile(str(tmp_path / "x.tar"), expected_size=1 << 60).__enter__()
    assert os.listdir(tmp_path) == []


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    target = tmp_path / "img.tar"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".img.tar.artiload-{dead.stdout.strip()}-abcd1234.partial"
    live = tmp_path / f".img.tar.artiload-{os.getpid()}-abcd1234.partial"
    other = tmp_path / ".other.tar.artiload-1-abcd1234.partial"
    for path in (stale, live, other):
        path.write_bytes(b"x")
    remove_stale_temp_files(str(target))
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, other.name])


def test_verified_archive_passes_bytes_through_unchanged():
    data, image_id = docker_archive()
    archive = VerifiedArchive(chunked(data, [1000]), where="x.tar")
    assert b"".join(archive) == data
    assert archive.index.image_ids() == [image_id]


def test_digest_mismatch_withholds_the_end_of_the_archive():
    data, _ = docker_archive()
    pieces = chunked(data, [1000])
    archive = VerifiedArchive(pieces, where="x.tar", expected_sha256="sha256:" + "0" * 64)
    sent = []
    with pytest.raises(DigestMismatch, match="x.tar: sha256 is sha256:[0-9a-f]{64}, the artifact says sha256:0000"):
        for chunk in archive:
            sent.append(chunk)
    assert b"".join(sent) == b"".join(pieces[:-1])  # the engine never gets the last chunk


def test_format_errors_name_the_source(tmp_path):
    garbage = tmp_path / "g.tar"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(ArchiveError, match=f"{garbage}: not a tar archive"):
        list(VerifiedArchive(read_chunks(str(garbage)), where=str(garbage)))
    with pytest.raises(ArchiveError, match="archive .*missing.tar does not exist"):
        list(read_chunks(str(tmp_path / "missing.tar")))
