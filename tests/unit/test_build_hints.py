"""BuildKit errors that have a known fix name it (issue 19)."""

from __future__ import annotations

import pytest

from airflow_provider_artiload.buildkit.status import NO_BRIDGE_HINT, describe_failure


@pytest.mark.parametrize("daemon", [
    'process "/bin/sh -c echo hi" did not complete successfully: network bridge not found',
    "failed to create endpoint: could not find bridge docker0: route ip+net: no such network interface",
])
def test_no_bridge_errors_get_the_network_hint(daemon):
    assert describe_failure(None, daemon).endswith(f"({NO_BRIDGE_HINT})")
    assert "network extra to none" in NO_BRIDGE_HINT


def test_other_errors_get_no_hint():
    assert describe_failure(None, "exit code: 1") == "exit code: 1"
