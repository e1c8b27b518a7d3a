"""Go's own readers as a test oracle: ``go/tarlist.go`` built once per run from the standard library (no network).

Without Go the tests that need it skip on a developer's machine, and fail in CI
(``CI=true``): there the oracle must run (scripts/setup_lab.sh installs golang-go).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

SOURCE = Path(__file__).parent / "go" / "tarlist.go"


def build(work: Path) -> Path:
    """The lister, built into ``work``; skips (or, with CI=true, fails) without Go."""
    go = shutil.which("go")
    if go is None:
        message = "Go is not installed (apt-get install golang-go): cannot ask Go's archive/tar and encoding/json"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(message + "; CI=true, so the differential tests must run")
        pytest.skip(message)
    binary = work / "tarlist"
    env = {**os.environ, "GOCACHE": str(work / "cache"), "GOPATH": str(work / "path"), "CGO_ENABLED": "0",
           "GOFLAGS": "", "GOTOOLCHAIN": "local", "GOPROXY": "off"}
    built = subprocess.run([go, "build", "-o", str(binary), str(SOURCE)], cwd=work, env=env,
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    return binary


@pytest.fixture(scope="session")
def go_lister(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("go"))


def read_many(binary: Path, archives: Iterable[bytes]) -> list[list[dict]]:
    """What Go reads in each archive: its lines (entries, then end or error, then the decoded JSON members)."""
    payload = b"".join(struct.pack(">Q", len(a)) + a for a in archives)
    done = subprocess.run([str(binary), "-batch"], input=payload, capture_output=True, timeout=300, check=True)
    return [json.loads(line) for line in done.stdout.splitlines()]
