"""File secrets are read only from allowed directories, only from regular files, only up to BuildKit's limit."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from airflow_provider_artiload.buildkit.session.secrets import MAX_SECRET_SIZE, resolve_secret_file
from airflow_provider_artiload.exceptions import BuildError

CONTENT = b"TOPSECRET-VALUE-42"


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """``allowed/`` with a secret, ``outside/`` with another, and a sibling whose name extends ``allowed``."""
    allowed, outside, sibling = tmp_path / "allowed", tmp_path / "outside", tmp_path / "allowed-not"
    for directory in (allowed, outside, sibling):
        directory.mkdir()
    (allowed / "npmrc").write_bytes(CONTENT)
    (outside / "token").write_bytes(CONTENT)
    (sibling / "token").write_bytes(CONTENT)
    return {"root": tmp_path, "allowed": allowed, "outside": outside, "sibling": sibling}


def refused(secret_id: str, path: Path | str, roots, needle: str) -> str:
    with pytest.raises(BuildError) as info:
        resolve_secret_file(secret_id, str(path), roots)
    message = str(info.value)
    assert repr(secret_id) in message and str(path) in message and needle in message
    assert CONTENT.decode() not in message
    return message


def test_a_file_inside_a_root_is_read(tree):
    assert resolve_secret_file("npm", str(tree["allowed"] / "npmrc"), [str(tree["allowed"])]) == CONTENT


def test_no_roots_means_anywhere(tree):
    assert resolve_secret_file("tok", str(tree["outside"] / "token"), []) == CONTENT


def test_any_of_several_roots(tree):
    roots = [str(tree["outside"]), str(tree["allowed"])]
    assert resolve_secret_file("npm", str(tree["allowed"] / "npmrc"), roots) == CONTENT


def test_a_single_string_root_is_one_root_not_its_characters(tree):
    with pytest.raises(BuildError, match="outside the allowed"):
        resolve_secret_file("tok", str(tree["outside"] / "token"), str(tree["allowed"]))


@pytest.mark.parametrize(
    "where",
    [
        lambda t: t["outside"] / "token",
        lambda t: t["allowed"] / ".." / "outside" / "token",  # lexical escape
        lambda t: t["sibling"] / "token",  # "/x/allowed-not" is not under "/x/allowed"
        lambda t: Path("/etc/hostname"),
    ],
)
def test_files_outside_the_roots_are_refused(tree, where):
    refused("tok", where(tree), [str(tree["allowed"])], "outside the allowed secret directories")


def test_a_symlink_inside_a_root_pointing_outside_is_refused(tree):
    link = tree["allowed"] / "link"
    link.symlink_to(tree["outside"] / "token")
    message = refused("tok", link, [str(tree["allowed"])], "outside the allowed")
    assert str(tree["outside"] / "token") in message  # says where it really points


def test_a_symlinked_directory_inside_a_root_pointing_outside_is_refused(tree):
    (tree["allowed"] / "sub").symlink_to(tree["outside"], target_is_directory=True)
    refused("tok", tree["allowed"] / "sub" / "token", [str(tree["allowed"])], "outside the allowed")


def test_a_symlink_from_outside_into_a_root_is_fine(tree):
    link = tree["outside"] / "to-npmrc"
    link.symlink_to(tree["allowed"] / "npmrc")
    assert resolve_secret_file("npm", str(link), [str(tree["allowed"])]) == CONTENT


def test_a_root_given_through_a_symlink_is_resolved_too(tree):
    alias = tree["root"] / "alias"
    alias.symlink_to(tree["allowed"], target_is_directory=True)
    assert resolve_secret_file("npm", str(tree["allowed"] / "npmrc"), [str(alias)]) == CONTENT


def test_a_fifo_is_refused_without_blocking(tree):
    fifo = tree["allowed"] / "fifo"
    os.mkfifo(fifo)
    outcome: list[BaseException | bytes] = []

    def run() -> None:
        try:
            outcome.append(resolve_secret_file("f", str(fifo), [str(tree["allowed"])]))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(5)
    if worker.is_alive():  # unblock the reader so the suite can finish, then fail
        with open(fifo, "wb"):
            pass
        pytest.fail("reading a FIFO secret blocked")
    assert isinstance(outcome[0], BuildError) and "a FIFO" in str(outcome[0])


@pytest.mark.parametrize(("path", "kind"), [("/dev/null", "character device"), ("/dev/zero", "character device")])
def test_devices_are_refused(path, kind):
    if not os.path.exists(path):
        pytest.skip(f"no {path}")
    refused("dev", path, [], kind)


def test_a_directory_is_refused(tree):
    refused("dir", tree["allowed"], [str(tree["root"])], "a directory")


def test_a_unix_socket_is_refused(tmp_path):
    path = tmp_path / "s.sock"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        refused("sock", path, [], "a socket")
    finally:
        server.close()


@pytest.mark.parametrize(("size", "ok"), [(0, True), (MAX_SECRET_SIZE, True), (MAX_SECRET_SIZE + 1, False), (5 << 20, False)])
def test_the_size_limit_is_buildkits(tree, size, ok):
    path = tree["allowed"] / "big"
    path.write_bytes(CONTENT[:1] * size)
    if ok:
        assert len(resolve_secret_file("big", str(path), [str(tree["allowed"])])) == size
    else:
        refused("big", path, [str(tree["allowed"])], f"larger than {MAX_SECRET_SIZE} bytes")


def test_a_missing_file_names_the_secret_and_the_path(tree):
    refused("gone", tree["allowed"] / "missing", [str(tree["allowed"])], "cannot read")


def test_an_unreadable_file_names_the_secret_and_the_path(tree):
    """Root reads anything, so the read runs in a forked child that dropped to nobody (uid 65534)."""
    path = tree["allowed"] / "npmrc"
    path.chmod(0)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report the error text through the pipe, then leave at once
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            resolve_secret_file("npm", str(path), [str(tree["allowed"])])
            message = "no error"
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            message = f"{type(exc).__name__} {exc}"
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    message = os.read(read_end, 65536).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert message.startswith("BuildError secret 'npm'") and str(path) in message, message
    assert "cannot read" in message or "outside" in message, message


def test_a_smaller_limit_can_be_given(tree):
    with pytest.raises(BuildError, match="larger than 4 bytes"):
        resolve_secret_file("npm", str(tree["allowed"] / "npmrc"), [], max_size=4)
