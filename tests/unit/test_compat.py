"""compat.py: the one place that knows the Airflow minor (3.1, 3.2, 3.3+); partition keys on asset events."""

from __future__ import annotations

import types

import airflow
import pytest

from airflow_provider_artiload import compat
from airflow_provider_artiload.operators import _assets


def test_version_flags_match_the_installed_airflow():
    major, minor = (int(x) for x in airflow.__version__.split(".")[:2])
    assert (major, minor) >= (3, 1)
    assert compat.AIRFLOW_V_3_2_PLUS == ((major, minor) >= (3, 2))
    assert compat.AIRFLOW_V_3_3_PLUS == ((major, minor) >= (3, 3))


def test_airflow_deprecations_our_code_triggers_are_errors():
    """pyproject.toml's filterwarnings: a deprecation attributed to the package or the tests fails the run."""
    import warnings

    from airflow.exceptions import RemovedInAirflow4Warning

    with pytest.raises(RemovedInAirflow4Warning):
        warnings.warn("a deprecated Airflow API", RemovedInAirflow4Warning, stacklevel=1)


def test_not_found_is_what_get_connection_raises(monkeypatch):
    from airflow.sdk import BaseHook

    monkeypatch.delenv("AIRFLOW_CONN_ARTILOAD_SURELY_MISSING", raising=False)
    with pytest.raises(compat.AirflowNotFoundException):
        BaseHook.get_connection("artiload_surely_missing")


class _Events:
    """outlet_events as the task runner gives it: an accessor per alias (by name: 3.1's AssetAlias is unhashable)."""

    def __init__(self):
        self.by_name: dict[str, types.SimpleNamespace] = {}

    def __getitem__(self, key):
        if key.name not in self.by_name:
            accessor = types.SimpleNamespace(added=[])
            accessor.add = lambda asset, extra=None: accessor.added.append((asset.uri, extra))
            self.by_name[key.name] = accessor
        return self.by_name[key.name]


@pytest.mark.parametrize("newer", [True, False], ids=["airflow-3.2+", "airflow-3.1"])
def test_asset_events_carry_the_partition_key_from_3_2(monkeypatch, newer):
    monkeypatch.setattr(compat, "AIRFLOW_V_3_2_PLUS", newer)
    events = _Events()
    context = {"outlet_events": events, "partition_key": "2026-01-01",
               "dag_run": types.SimpleNamespace(partition_key="2026-01-01")}
    _assets.emit(context, "docker-image://edge/app", {"image_id": "sha256:aa"})
    [(uri, extra)] = events[_assets.alias()].added
    assert uri == "docker-image://edge/app"
    assert extra == ({"image_id": "sha256:aa", "partition_key": "2026-01-01"} if newer else {"image_id": "sha256:aa"})


def test_no_partition_key_leaves_the_extra_alone(monkeypatch):
    monkeypatch.setattr(compat, "AIRFLOW_V_3_2_PLUS", True)
    for context in ({"partition_key": None}, {"dag_run": types.SimpleNamespace(partition_key=None)}, {}):
        events = _Events()
        _assets.emit({**context, "outlet_events": events}, "docker-image://edge/app", {"image_id": "x"})
        assert events[_assets.alias()].added[0][1] == {"image_id": "x"}


def test_partition_key_read_from_the_dag_run_when_the_context_has_none(monkeypatch):
    monkeypatch.setattr(compat, "AIRFLOW_V_3_2_PLUS", True)
    assert compat.partition_key({"dag_run": types.SimpleNamespace(partition_key="p1")}) == "p1"
    assert compat.partition_key(None) is None
