"""Session fixtures that start REAL processes (private dockerd engines, sshd) through scripts/harness.py.

Fixtures are lazy: a unit-test-only run starts nothing. A missing dockerd or
sshd makes the fixtures FAIL, never skip: CI must not silently lose real tests.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before anything imports Airflow: a throwaway home (unless one is given) and no example DAGs.
if "AIRFLOW_HOME" not in os.environ:  # setdefault, without making a directory we would not use
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="artiload-airflow-home-")
    atexit.register(shutil.rmtree, os.environ["AIRFLOW_HOME"], True)
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

ROOT = Path(__file__).resolve().parents[1]
from tests import processes  # noqa: E402  (after AIRFLOW_HOME is set; puts scripts/ on sys.path)
from tests.processes import harness, running  # noqa: E402

ENGINE_FIXTURES = {"engine", "engine_b", "engine_c"}  # tests using them run once per engine kind (scripts/test.sh)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/integration/ needs the real processes: mark it so `-m "not integration"` works."""
    integration = ROOT / "tests" / "integration"
    for item in items:
        if integration in item.path.parents:
            item.add_marker(pytest.mark.integration)
        if ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.engines)


@pytest.fixture(scope="session")
def tls_material() -> Iterator[harness.TLSMaterial]:
    """CA, server cert (127.0.0.1, ::1, localhost), clientAuth cert, and an unrelated CA."""
    workdir = processes.workdir()
    yield harness.make_tls_material(workdir)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def engine(request: pytest.FixtureRequest, tls_material: harness.TLSMaterial) -> Iterator[harness.Engine]:
    """Private engine A: unix socket + tcp://127.0.0.1 with mutual TLS, base image already built."""
    with running(request, "engine A", lambda d: processes.engine_with_base_image(d, name="engine-a", tls=tls_material)) as eng:
        yield eng


@pytest.fixture(scope="session")
def engine_b(request: pytest.FixtureRequest) -> Iterator[harness.Engine]:
    """Private engine B: unix socket only, no images."""
    with running(request, "engine B", lambda d: harness.start_engine(d, name="engine-b")) as eng:
        yield eng


@pytest.fixture(scope="session")
def engine_c(request: pytest.FixtureRequest) -> Iterator[harness.Engine]:
    """Private engine C: unix socket only, no images (the remote engine of the example DAGs)."""
    with running(request, "engine C", lambda d: harness.start_engine(d, name="engine-c")) as eng:
        yield eng


@pytest.fixture(scope="session")
def sshd(request: pytest.FixtureRequest) -> Iterator[harness.Sshd]:
    """Private sshd on 127.0.0.1: key-only root login, streamlocal forwarding allowed."""
    with running(request, "sshd", harness.start_sshd) as server:
        yield server


@pytest.fixture(scope="session")
def engines_by_kind(request: pytest.FixtureRequest) -> Iterator[dict[str, harness.Engine]]:
    """One private engine of every kind (system docker.io, Docker 28 classic, Docker 28 containerd store),
    each with the base image, for the cross-store tests; started together, stopped together."""
    started: dict[str, tuple[harness.Engine, str]] = {}
    try:
        for kind in harness.ENGINE_KINDS:
            workdir = processes.workdir()
            eng = processes.start(f"engine of kind {kind}", workdir, lambda d, k=kind: processes.engine_with_base_image(
                d, name=f"kind-{k}", kind=harness.engine_kind(k)))
            started[kind] = (eng, workdir)
        yield {kind: eng for kind, (eng, _) in started.items()}
    finally:
        for eng, workdir in started.values():
            processes.finish(request, eng, workdir)
