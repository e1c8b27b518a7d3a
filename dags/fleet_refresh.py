"""Fleet refresh: one artifact into many engines, two ways.

- ``load_each``: Airflow-native dynamic task mapping, one task per engine
  connection id (retries and logs per engine);
- ``load_fanout``: one task that reads the tarball once and streams it to
  every engine concurrently, each with its own skip/delta decision.
The fleet is the Variable ``artiload_fleet``: a JSON list of connection ids,
``docker_engine`` and ``containerd`` ones mixed (a k3s or Kubernetes node's
containerd: the image lands in namespace ``k8s.io``, unpacked, so pods with
``imagePullPolicy: Never`` start from it).

Retention: each load marks what it loaded and keeps the newest ``KEEP_LAST``
versions of ``artiload/fleet`` on each target (plus what a container uses and
the version ``latest`` named before), so a daily refresh does not fill an edge
host's disk; on a node, what is kept stays pinned against kubelet's image GC.
``RollbackImageOperator(tag="artiload/fleet:latest", engine_conn_id=...)``
moves ``latest`` back one version on any of them, with no transfer.

Mixed architectures: with the Variable ``artiload_platforms`` set (e.g.
``linux/amd64,linux/arm64``) one build makes every platform (the builder's
engine must use the containerd image store, have QEMU registered for the
foreign ones, and hold ``artiload_base_image`` for each platform); the save
keeps them all, and each target of the fleet, an arm64 edge box or node among
the amd64 servers, is sent and given only the image of its own platform (as
it reports it, or its connection's ``platform`` extra). Unset: one platform.
"""

from __future__ import annotations

from _common import BASE_IMAGE, BUILD_ENGINE, BUILDER, CONTEXT, DEFAULT_FLEET, MACROS, START, TARBALLS, check_base_image
from airflow.sdk import DAG, Variable, task

from airflow_provider_artiload.operators import BuildArtifactOperator, DockerLoadOperator, SaveImageOperator

KEEP_LAST = 3  # versions of artiload/fleet kept on each target

with DAG(
    dag_id="fleet_refresh",
    schedule="@daily",
    start_date=START,
    catchup=False,
    user_defined_macros=MACROS,
    tags=["artiload", "example"],
) as dag:

    @task
    def fleet() -> list[str]:
        return list(Variable.get("artiload_fleet", default=DEFAULT_FLEET, deserialize_json=True))

    engines = fleet()
    base = check_base_image(BASE_IMAGE)
    build = BuildArtifactOperator(
        task_id="build", context=CONTEXT, image="artiload/fleet:{{ ds_nodash }}", buildkit_conn_id=BUILDER,
        build_args={"DATA_DATE": "{{ ds }}", "BASE_IMAGE": BASE_IMAGE},  # a new version every day
        platforms="{{ var.value.get('artiload_platforms', '') }}",  # e.g. linux/amd64,linux/arm64: an arm64 target too
    )
    save = SaveImageOperator(task_id="save", image=build.output, path=TARBALLS + "/fleet/", engine_conn_id=BUILD_ENGINE)
    load_each = DockerLoadOperator.partial(
        task_id="load_each", source=save.output, tag="artiload/fleet:{{ ds_nodash }}", keep_last=KEEP_LAST
    ).expand(engine_conn_id=engines)
    load_fanout = DockerLoadOperator(
        task_id="load_fanout", source=save.output, engine_conn_id=engines, tag="artiload/fleet:latest", max_parallel=4,
        keep_last=KEEP_LAST,
    )
    load_each >> load_fanout
    base >> build
