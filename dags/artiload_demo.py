"""The main job: build an image with BuildKit, save it to a docker-archive, load it under dated tags.

Runs against the ``buildkit_default`` and ``docker_engine_default``
connections, or, without them, the engine the docker CLI would use
(``DOCKER_HOST``) and the BuildKit inside it. ``scripts/demo.sh`` runs it
with ``airflow dags test`` on a private local engine.
"""

from __future__ import annotations

import os

import pendulum
from _common import BASE_IMAGE, check_base_image
from airflow.sdk import DAG

from airflow_provider_artiload.operators import BuildArtifactOperator, DockerLoadOperator, SaveImageOperator

OUT = os.environ.get("ARTILOAD_DEMO_OUT", "/tmp/artiload")
CONTEXT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "context", "refresh")
ENGINE = "docker_engine_default"

with DAG(
    dag_id="artiload_demo",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["artiload", "example"],
) as dag:
    base = check_base_image(BASE_IMAGE, engine_conn_id=ENGINE)
    build = BuildArtifactOperator(
        task_id="build",
        context=CONTEXT,
        image="artiload-demo/build:{{ ds_nodash }}",
        build_args={"DATA_DATE": "{{ ds }}", "BASE_IMAGE": BASE_IMAGE},
    )
    base >> build
    save = SaveImageOperator(task_id="save", image=build.output, path=OUT + "/artiload-demo-{{ ds_nodash }}.tar")
    # The image is already in this engine, which would make the load a tag-only skip;
    # skip_existing=False and delta=False make the demo stream the whole archive anyway.
    load = DockerLoadOperator(
        task_id="load",
        source=save.output,
        tag=["artiload-demo:{{ ds_nodash }}", "artiload-demo:latest"],
        skip_existing=False,
        delta=False,
    )
