"""Secret-bearing extras go through Airflow's secrets masker, whatever their names.

Airflow hides a connection extra in its REST API, its UI and task logs when
the extra's *name* contains a sensitive word (``private_key``, ``passphrase``,
``password``, ``token``...), or when its *value* was registered with
``mask_secret``. ``tls_client_key`` matches no such word, so it was shown in
clear. Two things close that for every artiload connection type:

- :func:`register_secret_names` adds the names in
  ``endpoints.extras.SECRET_EXTRAS`` to the masker's sensitive names, in
  this process: to the defaults Airflow's settings configure the maskers
  from (when it runs before that) and to the maskers already configured.
  ``get_provider_info`` calls it, so it runs in every Airflow process that
  lists the providers (the API server that serves connections, the
  scheduler, the workers) before any connection is shown.
- :func:`mask_connection_secrets` registers the values themselves whenever a
  hook reads a connection, so a secret that reaches a log or an error
  message in a task is masked too.

Everything is looked up when called, by module name, because
``get_provider_info`` runs while ``airflow`` itself is still being imported
(its configuration lists the providers): importing ``airflow.sdk`` then would
be circular. The masker moved between Airflow minors: the task SDK's is
``airflow.sdk._shared.secrets_masker`` on 3.3 (``airflow.sdk.execution_time.
secrets_masker`` before), the API server's ``airflow._shared.secrets_masker``
on 3.2+ (``airflow.utils.log.secrets_masker`` on 3.1); ``mask_secret`` is in
each of them.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

from airflow_provider_artiload.endpoints.extras import SECRET_EXTRAS

# Newest first: the first that exists is this process's masker module of that kind (task SDK, core).
MASKER_MODULES = (
    ("airflow.sdk._shared.secrets_masker", "airflow.sdk.execution_time.secrets_masker"),
    ("airflow._shared.secrets_masker", "airflow.utils.log.secrets_masker"),
)


def _masker_modules() -> Iterator[ModuleType]:
    for candidates in MASKER_MODULES:
        for name in candidates:
            module = sys.modules.get(name)
            if module is None:
                try:
                    module = importlib.import_module(name)
                except ImportError:
                    continue
            yield module
            break


def register_secret_names() -> None:
    """Make this process's secrets maskers hide every secret extra by name (idempotent; never raises: it runs
    while Airflow lists its providers, which must not fail for it)."""
    try:
        _register()
    except Exception:  # noqa: BLE001  (a masker of another shape: the values are still masked by mask_connection_secrets)
        logging.getLogger(__name__).debug("cannot add artiload's secret extras to Airflow's sensitive names", exc_info=True)


def _register() -> None:
    for module in _masker_modules():
        for holder in {module, sys.modules.get(module.__name__ + ".secrets_masker")} - {None}:
            defaults = getattr(holder, "DEFAULT_SENSITIVE_FIELDS", None)
            if isinstance(defaults, frozenset) and not SECRET_EXTRAS <= defaults:
                holder.DEFAULT_SENSITIVE_FIELDS = defaults | SECRET_EXTRAS  # what settings configures maskers from
        masker = module._secrets_masker()
        fields = list(getattr(masker, "sensitive_variables_fields", None) or [])
        missing = [name for name in sorted(SECRET_EXTRAS) if name not in fields]
        if missing:
            masker.sensitive_variables_fields = fields + missing


def mask_connection_secrets(extras: Mapping[str, Any], password: str | None = None) -> None:
    """Register the value of every secret extra (and the connection's password) with the masker."""
    register_secret_names()
    values = [extras.get(name) for name in sorted(SECRET_EXTRAS)] + [password]
    for value in values:
        if not isinstance(value, str) or not value:
            continue
        for module in _masker_modules():
            module.mask_secret(value)
            for line in value.splitlines():  # an inline PEM: each of its lines is secret on its own
                if len(line.strip()) >= 16 and not line.startswith("-----"):
                    module.mask_secret(line.strip())
