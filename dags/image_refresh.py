"""Daily image refresh: build with BuildKit, save a tarball, load it into a local and a remote engine.

The tarball's path and sha256 travel through XCom from save to the loads;
each engine gets only what it lacks (skip / delta / full). Each load emits an
asset event for ``docker-image://<engine conn id>/artiload/refresh``, which
``on_image_refresh`` is scheduled on.
"""

from __future__ import annotations

from _common import BASE_IMAGE, BUILD_ENGINE, BUILDER, CONTEXT, LOCAL, MACROS, REMOTE, START, TARBALLS, check_base_image
from airflow.sdk import DAG

from airflow_provider_artiload.operators import BuildArtifactOperator, DockerLoadOperator, SaveImageOperator

TAGS = ["artiload/refresh:{{ ds_nodash }}", "artiload/refresh:latest"]

with DAG(
    dag_id="image_refresh",
    schedule="@daily",
    start_date=START,
    catchup=False,
    max_active_runs=1,
    user_defined_macros=MACROS,
    tags=["artiload", "example"],
) as dag:
    base = check_base_image(BASE_IMAGE)
    build = BuildArtifactOperator(
        task_id="build",
        context=CONTEXT,
        image="artiload/refresh:{{ ds_nodash }}",
        build_args={"DATA_DATE": "{{ ds }}", "BASE_IMAGE": BASE_IMAGE},
        labels={"org.opencontainers.image.version": "{{ ds }}"},
        buildkit_conn_id=BUILDER,
    )
    save = SaveImageOperator(task_id="save", image=build.output, path=TARBALLS + "/refresh/", engine_conn_id=BUILD_ENGINE)
    load_local = DockerLoadOperator(task_id="load_local", source=save.output, engine_conn_id=LOCAL, tag=TAGS)
    load_remote = DockerLoadOperator(task_id="load_remote", source=save.output, engine_conn_id=REMOTE, tag=TAGS)
    base >> build
