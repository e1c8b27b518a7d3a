"""Faults injected into REAL processes: each fails with a clear error, leaves nothing behind, and a retry works.

Engines that are stopped, restarted or SIGSTOPped here are this module's own
(``own``), never the shared ``engine``/``engine_b``. Connections are cut by a
relay thread in the test, sitting between the client and sshd or the engine.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

import harness  # scripts/harness.py, put on sys.path by tests/conftest.py
from airflow_provider_artiload.artifacts import DockerArchive
from airflow_provider_artiload.exceptions import (
    ConnectError,
    DestinationError,
    TransferError,
    TransferTimeout,
)
from airflow_provider_artiload.hooks.engine import DockerEngineHook
from airflow_provider_artiload.operators import DockerLoadOperator, SaveImageOperator
from tests.integration.test_engine_transfer import connect, drop, snapshot
from tests.processes import running

ROOT = Path(__file__).resolve().parents[2]
BIG = "faults/big:1"
BIG_LAYER = 24 << 20  # time enough to cut a transfer in the middle


# --- test tools: a relay that can cut or throttle, a FIFO that can pause, an engine of our own ----------------


class Relay:
    """Forwards connections (TCP or unix) to ``target`` in threads.

    ``cut_after``: once that many bytes went client->server, every connection
    is shut down both ways (a dropped network). ``rate``: server->client bytes
    per second (a slow link). Both can be changed between connections.
    """

    def __init__(self, target: tuple[str, int] | str, *, listen_unix: str | None = None,
                 cut_after: int | None = None, rate: float | None = None) -> None:
        self.target, self.cut_after, self.rate = target, cut_after, rate
        self.upstream = 0
        self.cut = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        if listen_unix:
            self.listener = socket.socket(socket.AF_UNIX)
            self.listener.bind(listen_unix)
            self.address: tuple[str, int] | str = listen_unix
        else:
            self.listener = socket.socket()
            self.listener.bind(("127.0.0.1", 0))
            self.address = self.listener.getsockname()
        self.listener.listen(64)
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def port(self) -> int:
        return self.address[1]  # type: ignore[index]

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            family = socket.AF_UNIX if isinstance(self.target, str) else socket.AF_INET
            server = socket.socket(family)
            server.connect(self.target)
            with self._lock:
                self._conns += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while data := src.recv(65536):
                if up:
                    with self._lock:
                        self.upstream += len(data)
                        cut = self.cut_after is not None and self.upstream >= self.cut_after
                    if cut:
                        self.cut.set()
                        self.drop_all()
                        return
                dst.sendall(data)
                if not up and self.rate:
                    time.sleep(len(data) / self.rate)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def drop_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        self.drop_all()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PausableFifo:
    """A FIFO that serves ``data`` up to ``pause_at``, then waits for :meth:`resume` (a source on a stalled disk)."""

    def __init__(self, path: Path, data: bytes, pause_at: int) -> None:
        self.path, self.data, self.pause_at = path, data, pause_at
        self.resumed, self.stopped = threading.Event(), threading.Event()
        os.mkfifo(path)
        threading.Thread(target=self._feed, daemon=True).start()

    def resume(self) -> None:
        self.resumed.set()

    def stop(self) -> None:
        self.stopped.set()
        self.resumed.set()

    def _feed(self) -> None:
        fd = os.open(self.path, os.O_WRONLY)  # blocks until the load opens it
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        position = 0
        try:
            while position < len(self.data) and not self.stopped.is_set():
                if position >= self.pause_at and not self.resumed.is_set():
                    self.resumed.wait(0.05)
                    continue
                end = len(self.data) if self.resumed.is_set() else self.pause_at
                try:
                    position += os.write(fd, self.data[position : min(end, position + 65536)])
                except BlockingIOError:
                    time.sleep(0.005)
                except BrokenPipeError:
                    return
        finally:
            os.close(fd)


class OwnEngine:
    """An engine only this module uses, so it may be stopped, restarted and SIGSTOPped."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.engine = harness.start_engine(self.workdir, name="faults")

    def __getattr__(self, name: str):  # unix_url, socket_path, pid ... of the current process
        return getattr(self.engine, name)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.engine.pid, signal.SIGCONT)  # a SIGSTOPped engine cannot stop
        self.engine.stop()

    def start(self) -> None:
        self.engine = harness.start_engine(self.workdir, name="faults")

    def ensure_running(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.engine.pid, signal.SIGCONT)
        if not harness._ping(self.engine.socket_path):
            self.stop()
            self.start()

    def temp_entries(self) -> list[str]:
        """Where an upload lands while it loads (the engine's TMPDIR, or the containerd store's ingest dir)."""
        return self.engine.temp_entries()

    def wait_temp_empty(self, timeout: float = 15.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while (left := self.temp_entries()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return left


@pytest.fixture(scope="module")
def own(request):
    with running(request, "engine faults", OwnEngine) as eng:
        yield eng


@pytest.fixture
def clean_own(own):
    """The own engine running and empty before and after a test."""
    own.ensure_running()
    drop(own, *[image_id for image_id, _ in snapshot(own)])
    yield own
    own.ensure_running()
    drop(own, *[image_id for image_id, _ in snapshot(own)])


@pytest.fixture(scope="module")
def big(engine, tmp_path_factory) -> DockerArchive:
    """busybox + a 24 MiB random layer, built in engine A and saved once."""
    harness.build_image(engine.socket_path, BIG, f"FROM {harness.BASE_TAG}\nRUN head -c {BIG_LAYER} /dev/urandom > /big.bin\n")
    os.environ["AIRFLOW_CONN_FAULTS_SRC"] = json.dumps({"conn_type": "docker_engine", "host": engine.unix_url})
    return DockerEngineHook("faults_src").save_image(BIG, str(tmp_path_factory.mktemp("faults") / "big.tar"))


def assert_loaded(own, archive: DockerArchive, tag: str) -> None:
    tagged = {tags for image_id, tags in snapshot(own) if image_id == archive.image_id}
    assert tagged and tag in next(iter(tagged)), snapshot(own)


# --- SSH connection cut mid-upload ----------------------------------------------------------------------------


@pytest.mark.parametrize("cut_mib", [3, 9, 18])
def test_ssh_connection_cut_mid_upload(monkeypatch, clean_own, sshd, big, cut_mib):
    before = snapshot(clean_own)
    with Relay((sshd.host, sshd.port), cut_after=cut_mib << 20) as relay:
        host = f"ssh://root@127.0.0.1:{relay.port}{clean_own.socket_path}"
        extra = {"key_file": sshd.client_key, "host_key": sshd.host_key_line, "look_for_keys": "false"}
        hook = connect(monkeypatch, "cut_ssh", host, **extra)
        started = time.monotonic()
        with pytest.raises(TransferError) as failure:
            hook.load_archive(big, tags=["faults/cut:1"])
        assert relay.cut.is_set(), "the relay never cut: the test proved nothing"
        assert time.monotonic() - started < 30
        message = str(failure.value)
        print("cut error:", message)
        assert message.startswith(host), message  # names the endpoint...
        assert any(word in message for word in ("closed", "reset", "EOF", "failed")), message  # ...and the cause
        assert snapshot(clean_own) == before
        assert clean_own.wait_temp_empty() == [], "the engine kept the cut upload's temp data"

        relay.cut_after = None  # the network is back: a fresh hook, through the same relay
        retry = connect(monkeypatch, "cut_ssh_retry", host, **extra)
        outcome = retry.load_archive(big, tags=["faults/cut:1"])
    assert outcome.mode == "full" and outcome.image_id == big.image_id
    assert_loaded(clean_own, big, "faults/cut:1")


# --- the engine restarted mid-load, or stopped before the task --------------------------------------------------


def _load_in_thread(op: DockerLoadOperator) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def execute() -> None:
        try:
            outcome["result"] = op.execute({})
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    thread = threading.Thread(target=execute, daemon=True)
    thread.start()
    return thread, outcome


def _wait_sent(op: DockerLoadOperator, at_least: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if op.hooks[0].client.dialer.counter.sent >= at_least:
                return
        time.sleep(0.02)
    raise AssertionError(f"the load did not send {at_least} bytes in {timeout} s")


def test_engine_restarted_mid_load(monkeypatch, clean_own, big, tmp_path):
    before = snapshot(clean_own)
    data = Path(big.path).read_bytes()
    fifo = PausableFifo(tmp_path / "restart.tar", data, pause_at=len(data) // 3)
    monkeypatch.setenv("AIRFLOW_CONN_RESTART_DST", json.dumps({"conn_type": "docker_engine", "host": clean_own.unix_url}))
    op = DockerLoadOperator(task_id="load", source=str(fifo.path), tag="faults/restart:1", engine_conn_id="restart_dst")
    try:
        runner, outcome = _load_in_thread(op)
        _wait_sent(op, len(data) // 4)
        clean_own.stop()  # the engine goes away with a third of the upload in it
        clean_own.start()  # and comes back on the same data-root and socket
        fifo.resume()
        runner.join(30)
        assert not runner.is_alive(), "the load hangs after the engine restarted"
    finally:
        fifo.stop()
    error = outcome.get("error")
    assert isinstance(error, TransferError), outcome
    assert str(error).startswith(clean_own.unix_url) and ("Broken pipe" in str(error) or "reset" in str(error)), error
    assert snapshot(clean_own) == before
    assert clean_own.wait_temp_empty() == []
    result = DockerLoadOperator(task_id="retry", source=big.to_xcom(), tag="faults/restart:1", engine_conn_id="restart_dst").execute({})
    assert result["mode"] == "full" and result["image_id"] == big.image_id
    assert_loaded(clean_own, big, "faults/restart:1")


def test_engine_stopped_before_the_task(monkeypatch, clean_own, big):
    monkeypatch.setenv("AIRFLOW_CONN_DOWN_DST", json.dumps({"conn_type": "docker_engine", "host": clean_own.unix_url}))
    clean_own.stop()
    op = DockerLoadOperator(task_id="load", source=big.to_xcom(), tag="faults/down:1", engine_conn_id="down_dst")
    with pytest.raises(ConnectError, match=rf"cannot reach {clean_own.unix_url}: .*(does not exist|refused)"):
        op.execute({})
    clean_own.start()
    assert snapshot(clean_own) == set()
    result = DockerLoadOperator(task_id="retry", source=big.to_xcom(), tag="faults/down:1", engine_conn_id="down_dst").execute({})
    assert result["image_id"] == big.image_id
    assert_loaded(clean_own, big, "faults/down:1")


# --- the task process SIGKILLed mid-save ------------------------------------------------------------------------

SAVE_SCRIPT = (
    "import sys\n"
    "from airflow_provider_artiload.hooks.engine import DockerEngineHook\n"
    "DockerEngineHook('killed_src').save_image(sys.argv[1], sys.argv[2])\n"
)


def test_task_sigkilled_mid_save_leaves_no_file_and_the_next_run_cleans_up(monkeypatch, engine, big, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "big.tar"
    slow_socket = str(tmp_path / "slow.sock")
    with Relay(engine.socket_path, listen_unix=slow_socket, rate=8 << 20):  # ~3 s for the image: time to kill
        env = {**os.environ, "AIRFLOW_CONN_KILLED_SRC": json.dumps({"conn_type": "docker_engine", "host": f"unix://{slow_socket}"})}
        proc = subprocess.Popen([sys.executable, "-c", SAVE_SCRIPT, BIG, str(dest)], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        temp_glob = f".big.tar.artiload-{proc.pid}-*.partial"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                temps = list(out.glob(temp_glob))
                if temps and temps[0].stat().st_size >= 2 << 20:
                    break
                time.sleep(0.02)
            assert proc.poll() is None, f"the save ended before it could be killed:\n{proc.stdout.read().decode()}"
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()  # reaped, as the Airflow supervisor does: the pid is gone
            proc.stdout.close()
    assert not dest.exists(), "a killed save left a file at the final path"
    leftovers = list(out.glob(temp_glob))
    assert len(leftovers) == 1 and leftovers[0].stat().st_mode & 0o777 == 0o600

    monkeypatch.setenv("AIRFLOW_CONN_RESAVE", json.dumps({"conn_type": "docker_engine", "host": engine.unix_url}))
    artifact = SaveImageOperator(task_id="resave", image=BIG, path=str(dest), engine_conn_id="resave").execute({})
    # Docker 25+ saves are not byte-reproducible (directory mtimes): the same image, size and layers
    assert (artifact["image_id"], artifact["size"], artifact["layers"]) == (big.image_id, big.size, big.layers)
    assert os.listdir(out) == ["big.tar"], "the dead task's temp file is still there"


# --- the destination fills up -----------------------------------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(size: str):
    mount_point = tempfile.mkdtemp(prefix="al-tmpfs-", dir="/tmp")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", mount_point], check=True)
    try:
        yield Path(mount_point)
    finally:
        subprocess.run(["umount", mount_point], check=False)
        os.rmdir(mount_point)


def test_destination_too_small_fails_before_writing(monkeypatch, engine, big):
    hook = connect(monkeypatch, "full_disk", engine.unix_url)
    with small_tmpfs("4m") as disk:
        dest = disk / "big.tar"
        with pytest.raises(DestinationError) as failure:
            hook.save_image(BIG, str(dest))
        message = str(failure.value)
        assert f"not enough space for {dest}: needs about " in message and "MiB" in message, message
        assert f"{disk} has 4.0 MiB free" in message, message
        assert os.listdir(disk) == []


def test_destination_fills_up_mid_write(monkeypatch, engine, big):
    """Free space passes the up-front check (the image's size) but not the archive's (size + tar headers).

    On the classic store the archive is well over the image's size (uncompressed tars plus headers). On
    the containerd store ``Size`` is the compressed content, barely under the archive, less than tmpfs's
    own accounting slack: there the reported size is lowered by 1 MiB, so the check passes and the
    write must fail mid-way, which is the path under test.
    """
    hook = connect(monkeypatch, "full_disk_mid", engine.unix_url)
    image_size = hook.client.inspect_image(BIG)["Size"]
    if big.size - image_size < 1 << 20:
        real_inspect = hook.client.inspect_image
        image_size -= 1 << 20
        monkeypatch.setattr(hook.client, "inspect_image", lambda ref: {**real_inspect(ref), "Size": image_size})
    assert big.size - image_size >= 1 << 20, "the archive is not bigger than the image's size"
    with small_tmpfs("40m") as disk:
        free = shutil.disk_usage(disk).free
        filler = disk / "filler"
        with open(filler, "wb") as handle:  # leave room for the image's size, not for the archive
            handle.write(b"\0" * (free - (image_size + (big.size - image_size) // 2)))
        left = shutil.disk_usage(disk).free
        assert image_size <= left < big.size, (image_size, left, big.size)
        dest = disk / "big.tar"
        with pytest.raises(DestinationError) as failure:
            hook.save_image(BIG, str(dest))
        message = str(failure.value)
        assert message.startswith(f"disk full writing {dest} after "), message
        assert "the archive needs about" in message and f"in {disk}" in message, message
        assert os.listdir(disk) == ["filler"]
        filler.unlink()  # room again: the retry succeeds
        again = hook.save_image(BIG, str(dest))  # Docker 25+ saves are not byte-reproducible: compare the image
        assert (again.image_id, again.layers, again.size) == (big.image_id, big.layers, big.size)
        assert os.listdir(disk) == ["big.tar"]


# --- the engine stalls ------------------------------------------------------------------------------------------


def test_engine_stall_times_out_and_the_engine_releases_its_temp_data(monkeypatch, clean_own, big, tmp_path):
    before = snapshot(clean_own)
    data = Path(big.path).read_bytes()
    fifo = PausableFifo(tmp_path / "stall.tar", data, pause_at=8 << 20)
    conn = {"conn_type": "docker_engine", "host": clean_own.unix_url, "extra": {"transfer_timeout": "3"}}
    monkeypatch.setenv("AIRFLOW_CONN_STALL_DST", json.dumps(conn))
    op = DockerLoadOperator(task_id="load", source=str(fifo.path), tag="faults/stall:1", engine_conn_id="stall_dst")
    try:
        runner, outcome = _load_in_thread(op)
        _wait_sent(op, 4 << 20)
        time.sleep(0.3)  # let the engine write what it got to its temp dir
        os.kill(clean_own.pid, signal.SIGSTOP)  # the kernel still buffers; nobody reads
        stalled_at = time.monotonic()
        try:
            held = clean_own.engine.upload_entries()
            fifo.resume()
            runner.join(20)
            waited = time.monotonic() - stalled_at
        finally:
            os.kill(clean_own.pid, signal.SIGCONT)
        assert not runner.is_alive(), "the load hangs on a stalled engine"
    finally:
        fifo.stop()
    assert held, "the engine had no temp data while stalled: the test proved nothing"
    error = outcome.get("error")
    assert isinstance(error, TransferTimeout), outcome
    assert str(error).startswith(clean_own.unix_url) and "3.0 s" in str(error), error
    assert waited < 3 + 5, f"took {waited:.1f} s with transfer_timeout=3"
    assert clean_own.wait_temp_empty() == [], "the engine kept the aborted upload"
    assert snapshot(clean_own) == before
    result = DockerLoadOperator(task_id="retry", source=big.to_xcom(), tag="faults/stall:1", engine_conn_id="stall_dst").execute({})
    assert result["mode"] == "full"
    assert_loaded(clean_own, big, "faults/stall:1")


def test_ssh_link_lost_under_a_writer_is_a_transfer_error(monkeypatch, engine, sshd):
    """The local end of the SSH link fails while a stream writes (what a cut often looks like to the writer)."""
    host = f"ssh://root@127.0.0.1:{sshd.port}{engine.socket_path}"
    hook = connect(monkeypatch, "lost_link", host, key_file=sshd.client_key, known_hosts=sshd.known_hosts, look_for_keys="false")
    stream = hook.client.dialer.dial(timeout=10)
    stream.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
    hook.client.dialer._client.get_transport().sock.shutdown(socket.SHUT_WR)  # the link breaks under us
    try:
        with pytest.raises(TransferError, match=rf"^{host}: (write|read) failed"):
            for _ in range(64):
                stream.sendall(b"\0" * 65536)
    finally:
        stream.abort()  # tearing down a dead link must not raise either
        stream.close()
        hook.close()
