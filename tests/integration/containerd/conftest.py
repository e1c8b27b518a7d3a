"""Real standalone containerd processes (Debian's 1.6 and the fetched 2.x), and clients for them.

The ``containerd`` fixture is session-scoped and parametrized over both
binaries, so every test runs against each. A missing binary FAILS, never
skips (CI must not silently lose real tests). Clients dial over the unix
socket or, with ``ssh_dialer``, through the loopback sshd's streamlocal channel.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import harness_containerd  # scripts/, put on sys.path by tests/processes.py
from airflow_provider_artiload.containerd import ContainerdClient
from airflow_provider_artiload.endpoints import parse_endpoint
from airflow_provider_artiload.transport import Stream, open_dialer
from harness_containerd import Dials
from tests.processes import running

BINARIES = {"1.6": harness_containerd.DEBIAN_CONTAINERD, "2.x": harness_containerd.FETCHED_CONTAINERD}


@pytest.fixture(scope="session", params=sorted(BINARIES), ids=lambda v: f"containerd-{v}")
def containerd(request: pytest.FixtureRequest) -> Iterator[harness_containerd.Containerd]:
    def start(workdir: str) -> harness_containerd.Containerd:
        return harness_containerd.start_containerd(workdir, BINARIES[request.param])

    with running(request, f"containerd {request.param}", start, prefix="al-ctd-") as server:
        yield server


def _untimed(stream: Stream) -> Stream:
    """No read timeout once dialled (the dial's 15 s bounds the unix connect only), as these tests always had."""
    stream.settimeout(None)
    return stream


def _client(url: str, extras: dict | None = None) -> tuple[ContainerdClient, Dials, object]:
    dialer = open_dialer(parse_endpoint(url, kind="engine", extras=extras))  # no "containerd" kind yet
    dials = Dials(lambda: _untimed(dialer.dial(timeout=15)))
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
