"""Backfill: one image per logical date, built, saved and loaded with date-templated tags and paths.

``catchup=True`` over a short range with several runs at once: each run
writes its own tarball and tag, so runs never collide; re-running a date
reuses the complete tarball and skips the engine that has the image.

All runs share one build cache, ``<tarballs>/build-cache/backfill``: on object
storage when the ``artiload_store`` connection exists (see ``_common.py``),
so a run on any worker and any engine starts from what earlier runs built.
Each build imports the latest export and exports its own (``mode=max``:
intermediate steps too); concurrent runs are safe (see
``buildkit/cache_store.py``). A builder whose engine cannot export cache (the
classic image store) still imports; ``ignore-error=true`` skips its export
instead of failing the run.
"""

from __future__ import annotations

import pendulum
from _common import BASE_IMAGE, BUILD_ENGINE, BUILDER, CONTEXT, LOCAL, MACROS, START, TARBALLS, check_base_image
from airflow.sdk import DAG

from airflow_provider_artiload.operators import BuildArtifactOperator, DockerLoadOperator, SaveImageOperator

CACHE = TARBALLS + "/build-cache/backfill"

with DAG(
    dag_id="backfill",
    schedule="@daily",
    start_date=START,
    end_date=pendulum.datetime(2026, 1, 3, tz="UTC"),
    catchup=True,
    max_active_runs=3,
    user_defined_macros=MACROS,
    tags=["artiload", "example"],
) as dag:
    base = check_base_image(BASE_IMAGE)
    build = BuildArtifactOperator(
        task_id="build",
        context=CONTEXT,
        image="artiload/backfill:{{ ds_nodash }}",
        build_args={"DATA_DATE": "{{ ds }}", "BASE_IMAGE": BASE_IMAGE},
        cache_from="type=local,src=" + CACHE,
        cache_to="type=local,dest=" + CACHE + ",mode=max,ignore-error=true",
        buildkit_conn_id=BUILDER,
    )
    save = SaveImageOperator(
        task_id="save", image=build.output, path=TARBALLS + "/backfill/{{ ds_nodash }}.tar", engine_conn_id=BUILD_ENGINE
    )
    load = DockerLoadOperator(
        task_id="load", source=save.output, engine_conn_id=LOCAL, tag="artiload/backfill:{{ ds_nodash }}"
    )
    base >> build
