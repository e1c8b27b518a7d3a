"""containerd/ imports one way: the connection core below the services, the client and unpacker above them."""

from __future__ import annotations

import ast
import pathlib

import airflow_provider_artiload.containerd as package

PACKAGE = "airflow_provider_artiload.containerd"
ROOT = pathlib.Path(package.__file__).parent


def imports_within_package() -> dict[str, set[str]]:
    """module -> the containerd modules it imports (generated _proto code left out), read from the source."""
    graph: dict[str, set[str]] = {}
    for path in ROOT.glob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
                rest = node.module[len(PACKAGE) :].lstrip(".")
                names.update([rest] if rest else [alias.name for alias in node.names])
        graph[path.stem] = {name for name in names if name and not name.startswith("_proto")}
    return graph


def test_containerd_has_no_import_cycle():
    graph = imports_within_package()
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        if module in done:
            return
        for name in graph.get(module, ()):
            visit(name, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())


def test_the_core_and_services_never_import_the_client_or_unpacker():
    graph = imports_within_package()
    assert graph["connection"] <= {"errors"}
    for service in ("content", "images", "leases", "snapshots", "stream", "unpack"):
        assert not graph[service] & {"client", "__init__"}, service
    for service in ("content", "images", "leases", "snapshots"):
        assert "unpack" not in graph[service], service
