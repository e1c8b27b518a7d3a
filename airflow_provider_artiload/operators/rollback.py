"""RollbackImageOperator: re-point a tag at the version loaded before the one it names, on each target; no transfer."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, Context

from airflow_provider_artiload.exceptions import ArtiloadError
from airflow_provider_artiload.hooks.engine import DockerEngineHook
from airflow_provider_artiload.hooks.targets import TargetHook, target_hooks
from airflow_provider_artiload.logs import quiet_libraries
from airflow_provider_artiload.oci.reference import parse_reference
from airflow_provider_artiload.transfer import retention


class RollbackImageOperator(BaseOperator):
    """Roll ``tag`` back, on every target, to the version artiload loaded before the one it names now.

    Versions are those a load with ``keep_last`` marked (by load time); the
    tag moves with no bytes sent, as ``docker tag`` would. On a containerd
    node the record keeps its labels (its pin). A target where the tag names
    the oldest version left, or an image artiload did not load, fails with
    :class:`~airflow_provider_artiload.exceptions.RetentionError` naming the
    target, the repository and the versions there; the other targets still
    roll back, and the task fails afterwards.

    Returns ``{"tag", "targets": [{"target", "tag", "from", "to", "loaded_at"}]}``.

    :param tag: the reference to roll back, e.g. ``app:latest``. (templated)
    :param engine_conn_id: a ``docker_engine`` or ``containerd`` connection id, or a list. (templated)
    """

    template_fields: Sequence[str] = ("tag", "engine_conn_id")
    ui_color = "#f7e3c9"

    def __init__(self, *, tag: str, engine_conn_id: str | Sequence[str] = DockerEngineHook.default_conn_name,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tag = tag
        self.engine_conn_id = engine_conn_id

    @cached_property
    def hooks(self) -> list[TargetHook]:
        return target_hooks(self.engine_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        parse_reference(self.tag)  # a bad tag fails before anything connects
        results: list[dict[str, Any]] = []
        failures: list[str] = []
        try:
            with quiet_libraries():
                for hook in self.hooks:
                    try:
                        results.append(retention.rollback(hook.target.lifecycle, self.tag, self.log))
                    except ArtiloadError as exc:
                        self.log.error("%s", exc)
                        failures.append(str(exc))
        finally:
            for hook in self.hooks:
                hook.close()
        if failures:
            if len(self.hooks) == 1:
                raise retention.RetentionError(failures[0])
            raise retention.RetentionError(f"rollback of {self.tag} failed on {len(failures)} of {len(self.hooks)} "
                                           f"targets: " + "; ".join(failures))
        return {"tag": self.tag, "targets": results}
