"""The example DAG fleet_refresh keeps the last KEEP_LAST versions on each engine, by a real Airflow (``dags test``)."""

from __future__ import annotations

import docker

from tests.integration.test_dags import airflow_env, dags_test, example_env  # noqa: F401  (fixtures and a helper)

KEEP_LAST = 3  # dags/fleet_refresh.py


def test_fleet_refresh_keeps_the_last_versions_on_every_engine(example_env, engine_b, engine_c):  # noqa: F811
    dates = ["2026-05-01", "2026-05-02", "2026-05-03", "2026-05-04"]
    logs = [dags_test(example_env, "fleet_refresh", date) for date in dates]
    assert "keeps" in logs[-1].stdout + logs[-1].stderr
    for target in (engine_b, engine_c):
        client = docker.DockerClient(base_url=target.unix_url)
        tags = {tag for image in client.images.list(name="artiload/fleet") for tag in image.tags}
        markers = {tag for tag in tags if ":artiload-" in tag}
        assert len(markers) == KEEP_LAST, sorted(tags)
        assert "artiload/fleet:20260501" not in tags
        assert {"artiload/fleet:20260502", "artiload/fleet:20260503", "artiload/fleet:20260504"} <= tags
        out = client.containers.run("artiload/fleet:latest", ["cat", "/app/DATA_DATE"], network_mode="none", remove=True)
        assert out == b"2026-05-04\n"
