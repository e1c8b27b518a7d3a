"""Settings shared by the example DAGs: connection ids, where tarballs go, the build context.

Connections (``AIRFLOW_CONN_*`` or the UI; see docs/connections.md):
- ``artiload_builder``: a ``buildkit`` connection (e.g. ``docker://`` plus extra
  ``engine_conn_id: artiload_build_engine``: the BuildKit inside that engine);
- ``artiload_build_engine``: the builder's Docker Engine (``docker_engine``);
- ``artiload_local`` / ``artiload_remote``: engines to load into (the remote
  one typically ``ssh://user@host``).
Variables: ``artiload_tarballs`` (a directory or object-storage URI, default
``/tmp/artiload``) and ``artiload_fleet`` (JSON list of engine connection ids).
"""

from __future__ import annotations

import os

import pendulum

CONTEXT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "context", "refresh")
TARBALLS = "{{ var.value.get('artiload_tarballs', '/tmp/artiload') }}"
BUILDER = "artiload_builder"
BUILD_ENGINE = "artiload_build_engine"
LOCAL = "artiload_local"
REMOTE = "artiload_remote"
DEFAULT_FLEET = [LOCAL, REMOTE]
START = pendulum.datetime(2026, 1, 1, tz="UTC")
