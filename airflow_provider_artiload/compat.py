"""The one place that knows which Airflow 3 minor is installed (3.1, 3.2, 3.3 and later).

artiload supports ``apache-airflow>=3.1``. Everything the provider takes from Airflow is imported from
here when its home moved between minors, the way Airflow's own providers keep a ``version_compat``
module, so no other module needs a ``try: import``. What moved (checked by importing each name on
3.1.8, 3.2.2 and 3.3.2 with deprecation warnings as errors, see ``tests/unit/test_compat.py``):

- ``AirflowNotFoundException``: ``airflow.sdk.exceptions`` from 3.2; on 3.1 only ``airflow.exceptions``
  (which is also what ``BaseHook.get_connection`` raises there).
- Partitioned runs (AIP-76) exist from 3.2: a run's ``partition_key`` is in the task context (3.3) and on
  its ``dag_run`` (3.2 and later); 3.1 has none.

Stable on every supported minor, so imported from ``airflow.sdk`` directly: ``BaseHook``,
``BaseOperator``, ``Context``, ``ObjectStoragePath``, ``Variable``, ``Asset``, ``AssetAlias``,
``airflow.sdk.exceptions.AirflowException``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow import __version__ as AIRFLOW_VERSION
from packaging.version import Version

_BASE = Version(Version(AIRFLOW_VERSION).base_version)
AIRFLOW_V_3_2_PLUS = _BASE >= Version("3.2.0")
AIRFLOW_V_3_3_PLUS = _BASE >= Version("3.3.0")

if AIRFLOW_V_3_2_PLUS:
    from airflow.sdk.exceptions import AirflowException, AirflowNotFoundException
else:  # Airflow 3.1: the task SDK re-exports AirflowException but not AirflowNotFoundException
    from airflow.exceptions import AirflowException, AirflowNotFoundException

__all__ = [
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "AIRFLOW_VERSION",
    "AirflowException",
    "AirflowNotFoundException",
    "partition_key",
]


def partition_key(context: Mapping[str, Any] | None) -> str | None:
    """The partition key of the running DAG run (Airflow 3.2+), or None (no partition, or Airflow 3.1)."""
    if not context or not AIRFLOW_V_3_2_PLUS:
        return None
    key = context.get("partition_key")
    if key is None:
        key = getattr(context.get("dag_run"), "partition_key", None)
    return key if isinstance(key, str) and key else None
