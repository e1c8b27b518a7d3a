"""The docs name what the code has: every operator parameter in docs/operators.md, every connection extra in
docs/connections.md, the artifact keys, and the three connection types. Names are read from the code, so a new
parameter or extra fails here until it is documented."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest
from airflow.sdk import BaseOperator

import airflow_provider_artiload
from airflow_provider_artiload import artifacts, operators
from airflow_provider_artiload.get_provider_info import get_provider_info

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(airflow_provider_artiload.__file__).parent  # the tree, or the installed wheel (scripts/matrix.sh)
OPERATORS_MD = (ROOT / "docs" / "operators.md").read_text()
CONNECTIONS_MD = (ROOT / "docs" / "connections.md").read_text()


def _operator_classes() -> list[type]:
    found = {obj for obj in vars(operators).values() if inspect.isclass(obj) and issubclass(obj, BaseOperator)}
    return sorted(found, key=lambda cls: cls.__name__)


def _section(markdown: str, heading: str) -> str:
    """The text under ``## heading`` up to the next ``## ``."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", markdown, flags=re.M | re.S)
    assert match, f"docs/operators.md has no section '## {heading}'"
    return match.group(1)


def test_there_are_operators_to_check():
    names = {cls.__name__ for cls in _operator_classes()}
    assert {"BuildArtifactOperator", "SaveImageOperator", "DockerLoadOperator", "CopyImageOperator",
            "TarballCleanupOperator"} <= names


@pytest.mark.parametrize("cls", _operator_classes(), ids=lambda cls: cls.__name__)
def test_every_operator_parameter_is_in_its_section_of_operators_md(cls):
    section = _section(OPERATORS_MD, cls.__name__)
    params = [
        name for name, p in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    missing = [name for name in params if f"| `{name}` |" not in section]
    assert not missing, f"docs/operators.md, section {cls.__name__}, has no table row for: {missing}"


def test_every_artifact_and_result_key_is_in_operators_md():
    for cls in (artifacts.DockerArchive, artifacts.ImageArtifact, artifacts.LoadOutcome):
        missing = [f.name for f in dataclasses.fields(cls) if f'"{f.name}"' not in OPERATORS_MD]
        assert not missing, f"docs/operators.md does not show {cls.__name__}'s keys {missing}"


def _extras_in_code() -> dict[str, set[str]]:
    """Extras by where they were found: the UI's declared fields, and every ``extras.get("x")`` in the package."""
    found: dict[str, set[str]] = {}
    for conn_type in get_provider_info()["connection-types"]:
        for name in conn_type.get("conn-fields", {}):
            found.setdefault(name, set()).add(f"conn-fields of {conn_type['connection-type']}")
    pattern = re.compile(r"""extras\.get\(\s*["']([a-z_]+)["']""")
    for path in PACKAGE.rglob("*.py"):
        for name in pattern.findall(path.read_text()):
            found.setdefault(name, set()).add(str(path.relative_to(PACKAGE.parent)))
    return found


def test_every_connection_extra_is_in_connections_md():
    extras = _extras_in_code()
    assert {"network", "tls_ca_cert", "key_file", "namespace", "platform", "transfer_timeout"} <= set(extras)
    missing = {name: sorted(where) for name, where in extras.items() if f"| `{name}` |" not in CONNECTIONS_MD}
    assert not missing, f"docs/connections.md has no table row for these extras (name: where read): {missing}"


def test_connection_types_are_all_documented():
    types = [c["connection-type"] for c in get_provider_info()["connection-types"]]
    assert len(types) == 3
    for conn_type in types:
        assert f"| `{conn_type}` |" in CONNECTIONS_MD
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        assert not re.search(r"\b(two|both) connection types\b", text), f"{path.name} says two connection types"


def test_no_doc_tells_users_to_pip_install_the_unpublished_name():
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for line in path.read_text().splitlines():
            assert not re.search(r"pip install +['\"]?airflow-provider-artiload\b", line), (
                f"{path.name}: {line.strip()!r}: the package is not on PyPI; install from a clone or a wheel"
            )
