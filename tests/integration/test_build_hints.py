"""A first build on an engine without a bridge network names the fix (issue 19).

The private test engines run with ``--bridge=none``, as machines without ``docker0`` do; a RUN step on the
daemon's default network then fails. The error must say to set the connection's ``network`` extra to ``none``.
"""

from __future__ import annotations

import json
import time

import pytest

from airflow_provider_artiload.buildkit.status import NO_BRIDGE_HINT
from airflow_provider_artiload.exceptions import BuildError
from airflow_provider_artiload.hooks.buildkit import BuildKitHook

BASE = "artiload-test/busybox:latest"


def test_run_step_without_a_bridge_names_the_network_extra(monkeypatch, engine, tmp_path):
    conn = {"conn_type": "buildkit", "host": f"docker://{engine.unix_url}"}  # no network extra: the daemon's default
    monkeypatch.setenv("AIRFLOW_CONN_BK_NO_NETWORK", json.dumps(conn))
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\nRUN echo run-{time.time()}\n")
    hook = BuildKitHook("bk_no_network")
    try:
        with pytest.raises(BuildError) as caught:
            hook.build(context=str(tmp_path), image="artiload-build/no-bridge:1")
    finally:
        hook.close()
    message = str(caught.value)
    assert "bridge" in message, message
    assert NO_BRIDGE_HINT in message, message
