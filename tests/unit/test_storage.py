"""Complete-or-absent tarball writes and verified, held-back reads."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import time

import pytest

from airflow_provider_artiload.exceptions import ArchiveError, DestinationError, DigestMismatch
from airflow_provider_artiload.storage import (
    UNLOCKED_STALE_SECONDS,
    AtomicFile,
    child,
    read_chunks,
    remove_stale_temp_files,
)
from airflow_provider_artiload.oci.verify import VerifiedArchive
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


def test_short_writes_are_continued_and_big_chunks_written_in_slices(tmp_path):
    """An unbuffered write() may take fewer bytes than it was given (a signal, a nearly full disk).

    The file is real; only its write() is narrowed, to take at most 1,000 bytes a call.
    """
    data = os.urandom(3 << 20)
    sizes: list[int] = []
    with AtomicFile(str(tmp_path / "img.tar")) as out:
        real = out._file.write

        def short(piece):
            sizes.append(len(piece))
            return real(piece[:1000])

        out._file.write = short
        out.write(data[:10])
        out.write(data[10:])
        out.commit()
    assert (tmp_path / "img.tar").read_bytes() == data
    assert out.size == len(data) and max(sizes) <= 128 << 10


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


WRITER = """
import sys, time
from airflow_provider_artiload.storage import AtomicFile
with AtomicFile(sys.argv[1]) as out:
    out.write(b"partial")
    print("TEMP=" + out._temp, flush=True)
    sys.stdin.read()  # hold the temp file (and its lock) until told to go on
    out.write(b" and the rest")
    out.commit()
"""


def _age(path, seconds):
    then = time.time() - seconds
    os.utime(path, (then, then))


def _start_writer(target):
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    for line in writer.stdout:
        if line.startswith("TEMP="):
            return writer, line[len("TEMP="):].strip()
    raise AssertionError(f"the writer exited with {writer.wait()}")


def test_cleanup_removes_old_unlocked_temp_files_and_never_a_live_writers(tmp_path):
    target = tmp_path / "img.tar"
    writer, live = _start_writer(target)  # a real second process, holding its temp file
    try:
        _age(live, 3600)  # old, but locked: its writer is alive
        stale = tmp_path / ".img.tar.artiload-1-abcd1234.partial"  # the pid in the name plays no part
        fresh = tmp_path / f".img.tar.artiload-{os.getpid()}-abcd1234.partial"  # a live pid, but nobody's lock
        other = tmp_path / ".other.tar.artiload-1-abcd1234.partial"
        for path in (stale, fresh, other):
            path.write_bytes(b"x")
        _age(stale, 3600)
        assert sorted(remove_stale_temp_files(str(target))) == sorted([stale.name, fresh.name])
        assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(live), other.name])
        writer.communicate("", timeout=30)  # the live writer finishes normally
        assert writer.returncode == 0 and target.read_bytes() == b"partial and the rest"
    finally:
        writer.kill()


def test_a_new_writer_to_the_same_path_leaves_a_live_writers_temp_file_alone(tmp_path):
    target = tmp_path / "img.tar"
    writer, live = _start_writer(target)
    try:
        _age(live, 7200)
        with AtomicFile(str(target)) as out:  # runs the cleanup on entry
            out.write(b"second")
            out.commit()
        assert os.path.exists(live)
        writer.communicate("", timeout=30)
        assert writer.returncode == 0 and target.read_bytes() == b"partial and the rest"
        assert os.listdir(tmp_path) == ["img.tar"]
    finally:
        writer.kill()


def test_a_killed_writers_temp_file_is_removed_at_once(tmp_path):
    target = tmp_path / "img.tar"
    writer, temp = _start_writer(target)
    writer.kill()
    writer.wait()  # its lock went with it
    assert remove_stale_temp_files(str(target)) == [os.path.basename(temp)]


def test_a_writer_that_loses_the_race_with_a_cleaner_takes_another_name(tmp_path, monkeypatch):
    """Between create and lock a cleaner may lock the new file (then remove it): the writer starts over."""
    import fcntl

    real, calls = fcntl.flock, []

    def cleaner_first(fd, op):
        calls.append(fd)
        if len(calls) == 1:  # the cleaner got the lock and removed the file
            os.unlink(os.readlink(f"/proc/self/fd/{fd}"))
            raise BlockingIOError(errno.EWOULDBLOCK, "locked")
        if len(calls) == 2:  # it removed the next one just before the writer's lock
            os.unlink(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd, op)

    monkeypatch.setattr(fcntl, "flock", cleaner_first)
    target = tmp_path / "img.tar"
    with AtomicFile(str(target)) as out:
        out.write(b"whole")
        out.commit()
    assert len(calls) == 3 and target.read_bytes() == b"whole" and os.listdir(tmp_path) == ["img.tar"]


def test_without_flock_only_long_unmodified_temp_files_go(tmp_path, monkeypatch):
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    target = tmp_path / "img.tar"
    recent = tmp_path / ".img.tar.artiload-1-aaaa0000.partial"
    abandoned = tmp_path / ".img.tar.artiload-1-bbbb0000.partial"
    for path in (recent, abandoned):
        path.write_bytes(b"x")
    _age(recent, UNLOCKED_STALE_SECONDS - 60)
    _age(abandoned, UNLOCKED_STALE_SECONDS + 60)
    assert remove_stale_temp_files(str(target)) == [abandoned.name]
    with AtomicFile(str(target)) as out:  # writing still works without locks
        out.write(b"x")
        out.commit()
    assert target.read_bytes() == b"x"


def test_an_empty_directory_at_the_path_is_replaced_and_a_full_one_refused(tmp_path):
    (tmp_path / "empty.tar").mkdir()
    with AtomicFile(str(tmp_path / "empty.tar")) as out:
        out.write(b"x")
        out.commit()
    assert (tmp_path / "empty.tar").read_bytes() == b"x"
    (tmp_path / "full.tar").mkdir()
    (tmp_path / "full.tar" / "data").write_bytes(b"keep me")
    with pytest.raises(DestinationError, match=r"full.tar: it is a directory with files in it"):
        AtomicFile(str(tmp_path / "full.tar")).__enter__()
    assert (tmp_path / "full.tar" / "data").read_bytes() == b"keep me"
    assert sorted(os.listdir(tmp_path)) == ["empty.tar", "full.tar"]


def test_directory_paths_keep_their_slash_on_every_backend(monkeypatch):
    from airflow_provider_artiload.hooks.paths import as_target

    monkeypatch.setenv("AIRFLOW_CONN_UNIT_S3", '{"conn_type": "aws", "extra": {"endpoint_url": "http://127.0.0.1:9"}}')
    for uri, path in (("s3://unit_s3@bucket/dir/", "bucket/dir/"), ("/data/refresh/", "/data/refresh/"),
                      ("file:///data/refresh/", "/data/refresh/")):
        target = as_target(uri)
        assert str(target).endswith("/") and getattr(target, "path", target) == path
        named = child(target, "abc.tar")
        assert str(named) == uri.replace("file://", "") + "abc.tar"
    assert not str(as_target("s3://unit_s3@bucket/dir/x.tar")).endswith("/")


def test_verified_archive_passes_bytes_through_unchanged():
    data, image_id = docker_archive()
    archive = VerifiedArchive(chunked(data, [1000]), where="x.tar")
    assert b"".join(archive) == data
    assert archive.image.config_digest == image_id


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
