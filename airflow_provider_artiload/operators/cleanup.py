"""TarballCleanupOperator: remove old tarballs under a prefix, local or object storage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from airflow_provider_artiload.hooks import paths


class TarballCleanupOperator(BaseOperator):
    """Delete ``*.tar`` files (and temp files abandoned by killed tasks) directly under ``prefix``
    that were last modified more than ``older_than_days`` ago. Returns the removed paths.

    :param prefix: a directory path or object-storage URI. (templated)
    :param older_than_days: age threshold in days.
    """

    template_fields: Sequence[str] = ("prefix",)

    def __init__(self, *, prefix: str, older_than_days: float = 7, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prefix = prefix
        self.older_than_days = older_than_days

    def execute(self, context: Context) -> list[str]:
        removed = paths.delete_older_than(self.prefix, self.older_than_days)
        self.log.info("Removed %d tarballs older than %s days under %s", len(removed), self.older_than_days, self.prefix)
        return removed
