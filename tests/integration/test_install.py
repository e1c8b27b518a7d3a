"""Release-ready packages, and installing into an Airflow a user already runs leaves that Airflow alone (issue 19).

- The sdist and the wheel build (``python -m build``) and pass ``twine check --strict``.
- In a fresh venv holding only Airflow 3.1 (the oldest supported minor, newest patch), ``pip install`` of the
  wheel, then of each extra, neither upgrades nor downgrades any Airflow package and resolves in under a minute,
  without this project's constraints files; then ``airflow providers get ... --full`` works there.

Needs PyPI (or a pip cache). ``ARTILOAD_WHEEL`` names an already built wheel (scripts/matrix.sh sets it);
otherwise the test builds one. Timings are printed: CI logs are where to read them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_31 = "3.1.8"
AIRFLOW_PACKAGES = ("apache-airflow", "apache-airflow-core", "apache-airflow-task-sdk")
RESOLVE_LIMIT = 60.0


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    given = os.environ.get("ARTILOAD_WHEEL")
    if given:
        return Path(given).parent
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], timeout=600)
    return out


def test_sdist_and_wheel_pass_twine_check(dist):
    files = sorted(dist.glob("airflow_provider_artiload-*"))
    assert any(f.suffix == ".whl" for f in files) and any(f.name.endswith(".tar.gz") for f in files), files
    _run([sys.executable, "-m", "twine", "check", "--strict", *map(str, files)], timeout=120)


def _versions(python: Path) -> dict[str, str]:
    out = _run([str(python), "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"]).stdout
    pairs = (line.split("==", 1) for line in out.splitlines() if "==" in line)
    return {name.lower(): version for name, version in pairs}


def test_installing_the_wheel_and_each_extra_leaves_airflow_31_alone(dist, tmp_path):
    [wheel] = sorted(dist.glob("*.whl"))
    venv = tmp_path / "user-airflow"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    started = time.monotonic()
    _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"apache-airflow=={AIRFLOW_31}"],
         timeout=900)
    print(f"\nAirflow {AIRFLOW_31} into a fresh venv: {time.monotonic() - started:.1f} s")
    before = _versions(python)
    assert before["apache-airflow"] == AIRFLOW_31
    for spec in (str(wheel), f"{wheel}[sftp]", f"{wheel}[s3]"):
        started = time.monotonic()
        _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", spec],
             timeout=RESOLVE_LIMIT * 5)
        took = time.monotonic() - started
        after = _versions(python)
        print(f"pip install {Path(spec).name}: {took:.1f} s")
        moved = {p: (before.get(p), after.get(p)) for p in AIRFLOW_PACKAGES if before.get(p) != after.get(p)}
        assert not moved, f"installing {spec} changed Airflow: {moved}"
        assert took < RESOLVE_LIMIT, f"pip install {spec} took {took:.0f} s (limit {RESOLVE_LIMIT:.0f} s)"
    assert "airflow-provider-artiload" in after
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    shown = _run([str(venv / "bin" / "airflow"), "providers", "get", "airflow-provider-artiload", "--full"],
                 env=env, cwd=str(tmp_path), timeout=300)
    assert "artiload" in shown.stdout
