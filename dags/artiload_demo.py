"""The main job: save an image to a docker-archive, then load it back under a dated tag.

Runs against the ``docker_engine_default`` connection, or, without one, the
engine the docker CLI would use (``DOCKER_HOST``). ``scripts/demo.sh`` runs
it with ``airflow dags test`` on a private local engine.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_provider_artiload.operators import DockerLoadOperator, SaveImageOperator

OUT = os.environ.get("ARTILOAD_DEMO_OUT", "/tmp/artiload")

with DAG(
    dag_id="artiload_demo",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["artiload", "example"],
) as dag:
    save = SaveImageOperator(
        task_id="save",
        image="artiload-test/busybox:latest",
        path=OUT + "/artiload-demo-{{ ds_nodash }}.tar",
    )
    # The image is already in this engine, which would make the load a tag-only skip;
    # skip_existing=False and delta=False make the demo stream the whole archive anyway.
    load = DockerLoadOperator(
        task_id="load",
        source=save.output,
        tag=["artiload-demo:{{ ds_nodash }}", "artiload-demo:latest"],
        skip_existing=False,
        delta=False,
    )
