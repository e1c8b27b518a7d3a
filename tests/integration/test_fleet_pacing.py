"""A slow target does not pace the fleet: one load call, three engines on fast sockets and one on a slow link.

The slow link is ``scripts/throttle.py``: a rate-limiting proxy in front of a
real engine's socket (4 MB/s towards the engine), standing in for an edge host
on a cellular link. Everything else is real: four private engines, the
archive read once, every target checked by what it holds and runs afterwards.
"""

from __future__ import annotations

import json
import os

import docker
import pytest

from airflow_provider_artiload.hooks.engine import DockerEngineHook
from airflow_provider_artiload.operators import DockerLoadOperator
from tests import processes
from tests.integration.test_engine_transfer import BASE, connect, empty, run
from tests.processes import harness

from throttle import Throttle  # noqa: E402  (scripts/ is on sys.path through tests.processes)

RATE = 4e6  # bytes/s to the slow engine
PAYLOAD = 24 << 20


@pytest.fixture(scope="module")
def engine_d(request):
    """A fourth private engine, only ever reached through the throttle."""
    with processes.running(request, "engine D", lambda d: harness.start_engine(d, name="engine-d")) as eng:
        yield eng


@pytest.fixture(scope="module")
def big_archive(engine, tmp_path_factory) -> str:
    """A 24 MiB random layer on the base image, saved once to a plain tarball path."""
    tag = "artiload-test/pacing:1"
    harness.build_image(engine.socket_path, tag, f"FROM {BASE}\nCOPY payload /payload\n", {"payload": os.urandom(PAYLOAD)})
    os.environ["AIRFLOW_CONN_PACING_SRC"] = json.dumps({"conn_type": "docker_engine", "host": engine.unix_url})
    path = str(tmp_path_factory.mktemp("pacing") / "pacing.tar")
    DockerEngineHook("pacing_src").save_image(tag, path)
    return path


def test_fast_targets_finish_while_the_slow_one_still_loads(monkeypatch, engine_b, engine_c, engine_d, big_archive):
    fast = [engine_b, engine_c]
    for eng in [*fast, engine_d]:
        empty(eng)
    with Throttle(engine_d.socket_path, RATE) as slow_link:
        connect(monkeypatch, "pacing_b", engine_b.unix_url)
        connect(monkeypatch, "pacing_c", engine_c.unix_url)
        connect(monkeypatch, "pacing_slow", slow_link.url)
        result = DockerLoadOperator(
            task_id="load", source=big_archive, tag="fleet/app:1", engine_conn_id=["pacing_b", "pacing_c", "pacing_slow"],
            skip_existing=False, max_parallel=4,
        ).execute({})
    by_engine = {t["engine"]: t for t in result["targets"]}
    slow = by_engine[slow_link.url]
    assert slow["seconds"] >= os.path.getsize(big_archive) / RATE * 0.9  # it really went through the slow link
    for eng in fast:  # each fast target reports its own time, well before the slow one's
        assert by_engine[eng.unix_url]["seconds"] < slow["seconds"] / 2, result["targets"]
    for eng in [*fast, engine_d]:  # and every target holds the image, tagged, and runs it
        image = docker.DockerClient(base_url=eng.unix_url).images.get("fleet/app:1")
        assert image.id == result["image_id"]
        assert run(eng, "fleet/app:1", "/bin/busybox", "stat", "-c", "%s", "/payload") == f"{PAYLOAD}\n".encode()
