"""Backfill: one image per logical date, built, saved and loaded with date-templated tags and paths.

``catchup=True`` over a short range with several runs at once: each run
writes its own tarball and tag, so runs never collide; re-running a date
reuses the complete tarball and skips the engine that has the image.
"""

from __future__ import annotations

import pendulum
from _common import BASE_IMAGE, BUILD_ENGINE, BUILDER, CONTEXT, LOCAL, MACROS, START, TARBALLS, check_base_image
from airflow.sdk import DAG

from airflow_provider_artiload.operators import BuildArtifactOperator, DockerLoadOperator, SaveImageOperator

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
        buildkit_conn_id=BUILDER,
    )
    save = SaveImageOperator(
        task_id="save", image=build.output, path=TARBALLS + "/backfill/{{ ds_nodash }}.tar", engine_conn_id=BUILD_ENGINE
    )
    load = DockerLoadOperator(
        task_id="load", source=save.output, engine_conn_id=LOCAL, tag="artiload/backfill:{{ ds_nodash }}"
    )
    base >> build
