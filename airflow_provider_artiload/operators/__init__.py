"""Thin, templated operators over the hooks."""

from airflow_provider_artiload.operators.build import BuildArtifactOperator
from airflow_provider_artiload.operators.cache_cleanup import BuildCacheCleanupOperator
from airflow_provider_artiload.operators.cleanup import TarballCleanupOperator
from airflow_provider_artiload.operators.copy import CopyImageOperator
from airflow_provider_artiload.operators.load import DockerLoadOperator
from airflow_provider_artiload.operators.rollback import RollbackImageOperator
from airflow_provider_artiload.operators.save import SaveImageOperator

__all__ = [
    "BuildArtifactOperator",
    "BuildCacheCleanupOperator",
    "CopyImageOperator",
    "DockerLoadOperator",
    "RollbackImageOperator",
    "SaveImageOperator",
    "TarballCleanupOperator",
]
