"""Real processes for fixtures (engines, sshd, containerd), started and stopped one way.

A process that cannot start makes its fixture FAIL, never skip: CI must not
silently lose real tests. After a failed test run the workdir (and its logs)
is kept to look at; otherwise it is removed. Whatever a crash leaves running
is stopped at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import harness  # noqa: E402  (scripts/ is not a package; imported by path on purpose)

T = TypeVar("T")
_running: list[Any] = []  # each has stop(); stopped by finish(), atexit is the backstop


@atexit.register
def _stop_leftovers() -> None:
    for thing in reversed(_running):
        with contextlib.suppress(Exception):
            thing.stop()


def workdir(prefix: str = "al-") -> str:
    """Short on purpose: unix socket paths are limited to 108 bytes."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def start(what: str, directory: str, starter: Callable[[str], T]) -> T:
    """Start a process; on failure FAIL (never skip) with its reason, keeping a non-empty workdir."""
    try:
        thing = starter(directory)
    except harness.HarnessError as exc:
        reason = str(exc)
    else:
        _running.append(thing)
        return thing
    with contextlib.suppress(OSError):
        os.rmdir(directory)  # only if empty, e.g. the program is not installed
    pytest.fail(f"could not start {what}: {reason}", pytrace=False)


def finish(request: pytest.FixtureRequest, thing: Any, directory: str) -> None:
    """Stop, then remove the workdir unless a test failed (keep the logs to look at)."""
    try:
        thing.stop()
    finally:
        if thing in _running:
            _running.remove(thing)
        if request.session.testsfailed:
            print(f"\nkept {directory} for inspection", file=sys.stderr)
        else:
            _remove(directory)


@contextlib.contextmanager
def running(request: pytest.FixtureRequest, what: str, starter: Callable[[str], T], *, prefix: str = "al-") -> Iterator[T]:
    """A process started in a fresh workdir for the body of a fixture, then finished."""
    directory = workdir(prefix)
    thing = start(what, directory, starter)
    try:
        yield thing
    finally:
        finish(request, thing, directory)


def engine_with_base_image(directory: str, *, name: str, **options: Any) -> harness.Engine:
    """A private engine holding the busybox base image; a failed build stops it and says why."""
    eng = harness.start_engine(directory, name=name, **options)
    try:
        harness.build_base_image(eng.socket_path)
    except Exception as exc:
        eng.stop()
        raise harness.HarnessError(f"base image build on {name} failed: {exc}\n"
                                   f"{eng.log_path} ends with:\n{harness.log_tail(eng.log_path)}") from exc
    return eng


def _remove(directory: str) -> None:
    """rmtree, retried briefly: containerd 2.x may still be removing its own sockets just after it exited."""
    for _ in range(20):
        shutil.rmtree(directory, ignore_errors=True)
        if not os.path.exists(directory):
            return
        time.sleep(0.1)
