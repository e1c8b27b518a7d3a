"""Settings shared by the example DAGs: connection ids, where tarballs go, the build context.

Connections (``AIRFLOW_CONN_*`` or the UI; see docs/connections.md):
- ``artiload_builder``: a ``buildkit`` connection (e.g. ``docker://`` plus extra
  ``engine_conn_id: artiload_build_engine``: the BuildKit inside that engine);
- ``artiload_build_engine``: the builder's Docker Engine (``docker_engine``);
- ``artiload_local`` / ``artiload_remote``: engines to load into (the remote
  one typically ``ssh://user@host``);
- ``artiload_store`` (optional): an ``sftp`` or ``aws`` connection; when it
  exists, tarballs go to object storage (``sftp://artiload_store@<schema>/``
  or ``s3://artiload_store@<schema>/``, ``schema`` being the remote directory
  or ``bucket/prefix``), so a load may run on another worker than its save.

Variables: ``artiload_tarballs`` (a directory or object-storage URI; wins over
the above; default ``/tmp/artiload`` without ``artiload_store``),
``artiload_fleet`` (JSON list of engine connection ids) and
``artiload_base_image`` (see below).

**Base image.** ``context/refresh/Dockerfile`` builds ``FROM`` the image named
by ``artiload_base_image`` (default ``artiload-test/busybox:latest``), which
must already be in the builder's engine: the examples need no registry. The
test harness builds that default from busybox-static
(``python scripts/harness.py base-image SOCKET``); elsewhere, pull or load any
image with ``/bin/sh`` into the engine and set the Variable. The DAGs check it
first (``check_base_image``) and say so, rather than failing the build.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import task

CONTEXT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "context", "refresh")
BUILDER = "artiload_builder"
BUILD_ENGINE = "artiload_build_engine"
LOCAL = "artiload_local"
REMOTE = "artiload_remote"
STORE = "artiload_store"
DEFAULT_FLEET = [LOCAL, REMOTE]
DEFAULT_BASE_IMAGE = "artiload-test/busybox:latest"
START = pendulum.datetime(2026, 1, 1, tz="UTC")
LOCAL_TARBALLS = "/tmp/artiload"
STORE_SCHEMES = {"sftp": "sftp", "ssh": "sftp", "aws": "s3"}

TARBALLS = "{{ var.value.get('artiload_tarballs', artiload_store()) }}"
BASE_IMAGE = "{{ var.value.get('artiload_base_image', '" + DEFAULT_BASE_IMAGE + "') }}"


def artiload_store() -> str:
    """Where tarballs go without the Variable: object storage when ``artiload_store`` exists, else local."""
    from airflow.sdk import BaseHook

    from airflow_provider_artiload.compat import AirflowNotFoundException  # airflow.exceptions on Airflow 3.1

    try:
        conn = BaseHook.get_connection(STORE)
    except AirflowNotFoundException:
        return LOCAL_TARBALLS
    scheme = STORE_SCHEMES.get(conn.conn_type)
    if scheme is None or not conn.schema:
        raise ValueError(f"connection {STORE!r} must be of type sftp or aws, with its schema field set to the "
                         f"remote directory (sftp) or bucket/prefix (aws); got {conn.conn_type!r}, {conn.schema!r}")
    return f"{scheme}://{STORE}@{conn.schema.rstrip('/')}" if scheme == "s3" else f"{scheme}://{STORE}@/{conn.schema.strip('/')}"


MACROS = {"artiload_store": artiload_store}


@task
def check_base_image(base_image: str, engine_conn_id: str = BUILD_ENGINE) -> str:
    """Fail early, and clearly, if the builder's engine lacks the image the Dockerfile builds FROM."""
    from airflow.sdk.exceptions import AirflowException

    from airflow_provider_artiload.exceptions import ImageNotFound
    from airflow_provider_artiload.hooks.engine import DockerEngineHook

    hook = DockerEngineHook(engine_conn_id)
    try:
        image_id = hook.client.inspect_image(base_image)["Id"]
    except ImageNotFound:
        raise AirflowException(
            f"the example DAGs build FROM {base_image!r}, which is not in the builder's engine "
            f"({engine_conn_id}: {hook.endpoint}); the examples use no registry. Load an image with /bin/sh "
            f"into that engine and set the Variable artiload_base_image to it, or build the default with "
            f"`python scripts/harness.py base-image <engine socket>` (see dags/_common.py)"
        ) from None
    finally:
        hook.close()
    return image_id
