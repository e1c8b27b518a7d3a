"""Real standalone containerd processes (Debian's 1.6 and the fetched 2.x), and clients for them.

The ``containerd`` fixture is session-scoped and parametrized over both
binaries, so every test runs against each. A missing binary FAILS, never
skips (CI must not silently lose real tests). Clients dial over the unix
socket or, with ``ssh_dialer``, through the loopback sshd's streamlocal channel.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import harness_containerd  # scripts/, put on sys.path by tests/conftest.py
from airflow_provider_artiload.containerd import ContainerdClient
from airflow_provider_artiload.endpoints import parse_endpoint
from airflow_provider_artiload.transport import Stream, open_dialer

BINARIES = {"1.6": harness_containerd.DEBIAN_CONTAINERD, "2.x": harness_containerd.FETCHED_CONTAINERD}


@pytest.fixture(scope="session", params=sorted(BINARIES), ids=lambda v: f"containerd-{v}")
def containerd(request: pytest.FixtureRequest) -> Iterator[harness_containerd.Containerd]:
    workdir = tempfile.mkdtemp(prefix="al-ctd-", dir="/tmp")
    try:
        server = harness_containerd.start_containerd(workdir, BINARIES[request.param])
    except harness_containerd.HarnessError as exc:
        with contextlib.suppress(OSError):
            os.rmdir(workdir)
        pytest.fail(f"could not start containerd {request.param}: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()
        if request.session.testsfailed:
            print(f"\nkept {workdir} for inspection", file=sys.stderr)
        else:
            for _ in range(20):  # 2.x may still be removing its own sockets just after it exited
                shutil.rmtree(workdir, ignore_errors=True)
                if not os.path.exists(workdir):
                    break
                time.sleep(0.1)


class Dials:
    """A dial function that remembers its open streams, so a test can cut them mid-call."""

    def __init__(self, dial: Callable[[], Stream]) -> None:
        self._dial = dial
        self.streams: list[Stream] = []
        self.bytes_out = 0  # every byte the client sent on these streams (gRPC framing included)
        self._lock = threading.Lock()

    def __call__(self) -> Stream:
        stream = self._dial()
        stream.settimeout(None)
        send = stream.sendall

        def counted(data) -> None:
            with self._lock:
                self.bytes_out += len(data)
            send(data)

        stream.sendall = counted  # type: ignore[method-assign]
        with self._lock:
            self.streams.append(stream)
        return stream

    def cut(self) -> None:
        with self._lock:
            streams, self.streams = self.streams, []
        for stream in streams:
            stream.abort()


def _client(url: str, extras: dict | None = None) -> tuple[ContainerdClient, Dials, object]:
    dialer = open_dialer(parse_endpoint(url, kind="engine", extras=extras))  # no "containerd" kind yet
    dials = Dials(lambda: dialer.dial(timeout=15))
    return ContainerdClient(dials, namespace="k8s.io", where=url), dials, dialer


@pytest.fixture
def unix_client(containerd: harness_containerd.Containerd) -> Iterator[tuple[ContainerdClient, Dials]]:
    client, dials, dialer = _client(f"unix://{containerd.socket_path}")
    yield client, dials
    client.close()
    dialer.close()


@pytest.fixture
def ssh_client(containerd: harness_containerd.Containerd, sshd) -> Iterator[tuple[ContainerdClient, Dials]]:
    extras = {"key_file": sshd.client_key, "known_hosts": sshd.known_hosts, "look_for_keys": "false"}
    client, dials, dialer = _client(f"ssh://{sshd.user}@{sshd.host}:{sshd.port}{containerd.socket_path}", extras)
    yield client, dials
    client.close()
    dialer.close()


@pytest.fixture(params=["unix", "ssh"])
def any_client(request: pytest.FixtureRequest) -> tuple[ContainerdClient, Dials]:
    """The same test over the unix socket and over SSH."""
    return request.getfixturevalue(f"{request.param}_client")
