"""Target connection ids -> hooks, by connection type: a Docker Engine, or a containerd node.

Each hook hands out what transfer needs: ``hook.target`` (a load target) and
``hook.source(image)`` (an image to read out). A new kind of target is one
more entry in :data:`HOOKS_BY_CONN_TYPE`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

from airflow.sdk import BaseHook

from airflow_provider_artiload.compat import AirflowNotFoundException
from airflow_provider_artiload.exceptions import ArtiloadError
from airflow_provider_artiload.hooks.containerd import ContainerdHook
from airflow_provider_artiload.hooks.engine import DockerEngineHook

TargetHook = Union[DockerEngineHook, ContainerdHook]
HOOKS_BY_CONN_TYPE: dict[str, type[ContainerdHook]] = {ContainerdHook.conn_type: ContainerdHook}


def target_hooks(conn_ids: str | Sequence[str], **settings: object) -> list[TargetHook]:
    """One hook per connection id (a single id or a list); engines unless the connection says otherwise.

    ``settings`` (e.g. ``pin``) go to the hooks whose kind lists them in ``target_settings``.
    """
    ids = [conn_ids] if isinstance(conn_ids, str) else list(conn_ids)
    if not ids:
        raise ArtiloadError("engine_conn_id is an empty list")
    hooks = []
    for conn_id in ids:
        hook_class = HOOKS_BY_CONN_TYPE.get(_conn_type(conn_id) or "", DockerEngineHook)
        own = {k: v for k, v in settings.items() if k in getattr(hook_class, "target_settings", ())}
        hooks.append(hook_class(conn_id, **own))
    return hooks


def _conn_type(conn_id: str) -> str | None:
    try:
        return BaseHook.get_connection(conn_id).conn_type
    except AirflowNotFoundException:
        return None  # the default engine (the docker CLI's defaults), or a missing one that fails by name later
