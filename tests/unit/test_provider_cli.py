"""``airflow providers get airflow-provider-artiload --full`` as a user runs it (docs/quickstart.md).

Airflow prints the provider metadata through rich, which reads ``[x]`` and ``[/x]`` as markup: the text
``os/arch[/variant]`` once made the command crash with ``MarkupError: closing tag '[/variant]'``. The JSON
output never showed it, so the real command runs here with its default (table) output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.markup import render

from airflow_provider_artiload.get_provider_info import get_provider_info


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def test_no_metadata_text_is_read_as_rich_markup():
    for text in _strings(get_provider_info()):
        assert render(text).plain == text, f"rich reads part of {text!r} as markup: reword it"


def _airflow() -> str:
    found = Path(sys.executable).with_name("airflow")
    return str(found) if found.exists() else (shutil.which("airflow") or "airflow")


@pytest.mark.parametrize("args", [[], ["-o", "yaml"]], ids=["table", "yaml"])
def test_providers_get_full_exits_zero(tmp_path, args):
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "COLUMNS": "200"}
    proc = subprocess.run([_airflow(), "providers", "get", "airflow-provider-artiload", "--full", *args],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "artiload" in proc.stdout
    if args:  # the table wraps its cells; the YAML keeps each description on one line
        assert "os/arch or os/arch/variant" in proc.stdout
