"""Session fixtures that start REAL processes (private dockerd engines, sshd) through scripts/harness.py.

Fixtures are lazy: a unit-test-only run starts nothing. A missing dockerd or
sshd makes the fixtures FAIL, never skip: CI must not silently lose real tests.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

# Before anything imports Airflow: a throwaway home (unless one is given) and no example DAGs.
if "AIRFLOW_HOME" not in os.environ:  # setdefault, without making a directory we would not use
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="artiload-airflow-home-")
    atexit.register(shutil.rmtree, os.environ["AIRFLOW_HOME"], True)
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import harness  # noqa: E402  (scripts/ is not a package; imported by path on purpose)

T = TypeVar("T")
ENGINE_FIXTURES = {"engine", "engine_b", "engine_c"}  # tests using them run once per engine kind (scripts/test.sh)
_running: list[harness.Engine | harness.Sshd] = []  # stopped by teardown; atexit is the backstop


@atexit.register
def _stop_leftovers() -> None:
    for thing in reversed(_running):
        with contextlib.suppress(Exception):
            thing.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/integration/ needs the real processes: mark it so `-m "not integration"` works."""
    integration = ROOT / "tests" / "integration"
    for item in items:
        if integration in item.path.parents:
            item.add_marker(pytest.mark.integration)
        if ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.engines)


def _workdir() -> str:
    """Short on purpose: unix socket paths are limited to 108 bytes."""
    return tempfile.mkdtemp(prefix="al-", dir="/tmp")


def _start(what: str, workdir: str, start: Callable[[str], T]) -> T:
    """Start a process; on failure FAIL (never skip) with its log tail, keeping a non-empty workdir."""
    try:
        thing = start(workdir)
    except harness.HarnessError as exc:
        reason = str(exc)
    else:
        _running.append(thing)
        return thing
    with contextlib.suppress(OSError):
        os.rmdir(workdir)  # only if empty, e.g. the program is not installed
    pytest.fail(f"could not start {what}: {reason}", pytrace=False)


def _finish(request: pytest.FixtureRequest, thing: harness.Engine | harness.Sshd, workdir: str) -> None:
    """Stop, then remove the workdir unless a test failed (keep the logs to look at)."""
    try:
        thing.stop()
    finally:
        if thing in _running:
            _running.remove(thing)
        if request.session.testsfailed:
            print(f"\nkept {workdir} for inspection", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def tls_material() -> Iterator[harness.TLSMaterial]:
    """CA, server cert (127.0.0.1, ::1, localhost), clientAuth cert, and an unrelated CA."""
    workdir = _workdir()
    yield harness.make_tls_material(workdir)
    shutil.rmtree(workdir, ignore_errors=True)


def _engine_with_base_image(workdir: str, tls: harness.TLSMaterial) -> harness.Engine:
    eng = harness.start_engine(workdir, tls=tls, name="engine-a")
    try:
        harness.build_base_image(eng.socket_path)
    except Exception as exc:
        eng.stop()
        raise harness.HarnessError(f"base image build failed: {exc}\n"
                                   f"{eng.log_path} ends with:\n{harness.log_tail(eng.log_path)}") from exc
    return eng


@pytest.fixture(scope="session")
def engine(request: pytest.FixtureRequest, tls_material: harness.TLSMaterial) -> Iterator[harness.Engine]:
    """Private engine A: unix socket + tcp://127.0.0.1 with mutual TLS, base image already built."""
    workdir = _workdir()
    eng = _start("engine A", workdir, lambda d: _engine_with_base_image(d, tls_material))
    try:
        yield eng
    finally:
        _finish(request, eng, workdir)


@pytest.fixture(scope="session")
def engine_b(request: pytest.FixtureRequest) -> Iterator[harness.Engine]:
    """Private engine B: unix socket only, no images."""
    workdir = _workdir()
    eng = _start("engine B", workdir, lambda d: harness.start_engine(d, name="engine-b"))
    try:
        yield eng
    finally:
        _finish(request, eng, workdir)


@pytest.fixture(scope="session")
def engine_c(request: pytest.FixtureRequest) -> Iterator[harness.Engine]:
    """Private engine C: unix socket only, no images (the remote engine of the example DAGs)."""
    workdir = _workdir()
    eng = _start("engine C", workdir, lambda d: harness.start_engine(d, name="engine-c"))
    try:
        yield eng
    finally:
        _finish(request, eng, workdir)


@pytest.fixture(scope="session")
def sshd(request: pytest.FixtureRequest) -> Iterator[harness.Sshd]:
    """Private sshd on 127.0.0.1: key-only root login, streamlocal forwarding allowed."""
    workdir = _workdir()
    server = _start("sshd", workdir, harness.start_sshd)
    try:
        yield server
    finally:
        _finish(request, server, workdir)


@pytest.fixture(scope="session")
def engines_by_kind(request: pytest.FixtureRequest) -> Iterator[dict[str, harness.Engine]]:
    """One private engine of every kind (system docker.io, Docker 28 classic, Docker 28 containerd store),
    each with the base image, for the cross-store tests; started together, stopped together."""
    started: dict[str, tuple[harness.Engine, str]] = {}

    def start(kind: str, d: str) -> harness.Engine:
        eng = harness.start_engine(d, name=f"kind-{kind}", kind=harness.engine_kind(kind))
        try:
            harness.build_base_image(eng.socket_path)
        except Exception as exc:
            eng.stop()
            raise harness.HarnessError(f"base image build on {kind} failed: {exc}") from exc
        return eng

    try:
        for kind in harness.ENGINE_KINDS:
            workdir = _workdir()
            started[kind] = (_start(f"engine of kind {kind}", workdir, lambda d, k=kind: start(k, d)), workdir)
        yield {kind: eng for kind, (eng, _) in started.items()}
    finally:
        for eng, workdir in started.values():
            _finish(request, eng, workdir)
