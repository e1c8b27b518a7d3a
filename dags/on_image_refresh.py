"""Runs when an image refresh lands: scheduled on the asset the loads of ``image_refresh`` emit.

DockerLoadOperator emits, per engine and repository, an asset event for
``docker-image://<engine connection id>/<repository>`` whose extra carries
``image_id``, ``digest``, ``tags``, ``engine`` and ``mode``. This DAG runs once
``artiload/refresh`` landed on the ``artiload_local`` engine, and reports what
arrived (a real one might roll out containers, or notify).
"""

from __future__ import annotations

from _common import LOCAL, START
from airflow.sdk import DAG, Asset, task

REFRESHED = Asset(f"docker-image://{LOCAL}/artiload/refresh")

with DAG(
    dag_id="on_image_refresh",
    schedule=[REFRESHED],
    start_date=START,
    catchup=False,
    tags=["artiload", "example"],
) as dag:

    @task
    def report(*, triggering_asset_events=None) -> list[dict]:
        landed = []
        for event in (triggering_asset_events or {}).get(REFRESHED, []):
            extra = dict(event.extra or {})
            print(f"{REFRESHED.uri}: {extra.get('image_id')} as {', '.join(extra.get('tags') or [])} "
                  f"on {extra.get('engine')} ({extra.get('mode')})")
            landed.append(extra)
        return landed

    report()
