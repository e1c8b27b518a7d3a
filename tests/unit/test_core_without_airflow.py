"""The core (transports, clients, formats, transfer) imports and runs in a venv without Airflow.

Only the Airflow edge (hooks/, operators/, the provider metadata, the Airflow version shim) may
import ``airflow``. The module list is found by walking the package, so a module added or moved
anywhere in the core is checked without editing this file.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import airflow_provider_artiload

PACKAGE = airflow_provider_artiload.__name__
ROOT = Path(airflow_provider_artiload.__file__).parent
EDGE = ("hooks", "operators", "get_provider_info", "compat")  # the Airflow-facing modules and packages

# Run with ``python -c``: a finder placed first on sys.meta_path refuses ``airflow`` and ``airflow.*``
# and records who asked, then every core module is imported; the verdict is printed as JSON.
PROBE = """
import importlib, json, pkgutil, sys

PACKAGE, EDGE = sys.argv[1], tuple(sys.argv[2].split(","))
asked = []

class NoAirflow:
    def find_spec(self, name, path=None, target=None):
        if name == "airflow" or name.startswith("airflow."):
            asked.append(name)
            raise ImportError(f"airflow is not installed here ({name})")
        return None

sys.meta_path.insert(0, NoAirflow())

failures, imported = {}, []

def load(name):
    before = len(asked)
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        failures[name] = f"{type(exc).__name__}: {exc}"
        return None
    if len(asked) > before:
        failures[name] = "asked for " + ", ".join(sorted(set(asked[before:])))
    imported.append(name)
    return module

def walk(package):
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if info.name[len(PACKAGE) + 1:].split(".")[0] in EDGE:
            continue
        module = load(info.name)
        if info.ispkg and module is not None:
            walk(module)

walk(load(PACKAGE))
print(json.dumps({"imported": imported, "failures": failures}))
"""


def _core_files() -> list[Path]:
    return [
        path
        for path in ROOT.rglob("*.py")
        if path.relative_to(ROOT).parts[0].removesuffix(".py") not in EDGE and "_proto" not in path.parts
    ]


def test_every_core_module_imports_where_airflow_cannot_be_imported():
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, PACKAGE, ",".join(EDGE)],
        capture_output=True, text=True, timeout=120, cwd=ROOT.parent, check=False,
    )
    assert probe.returncode == 0, probe.stderr
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    assert result["failures"] == {}
    imported = set(result["imported"])
    for module in ("exceptions", "endpoints", "storage", "progress", "logs", "artifacts",
                   "transport.ssh", "transport.sockets", "buildkit.client", "buildkit.status"):
        assert f"{PACKAGE}.{module}" in imported, module  # the walk reached the core, not an empty list
    assert [name for name in imported if name.partition(".")[2].split(".")[0] in EDGE] == []


def test_no_core_module_imports_airflow_lazily_either():
    """An ``import airflow`` inside a function runs only when called: read the source for it too."""
    lazy = []
    for path in _core_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            lazy += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.split(".")[0] == "airflow"]
    assert lazy == []
