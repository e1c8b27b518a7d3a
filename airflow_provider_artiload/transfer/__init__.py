"""Moving images: plans, load targets, sources, the fan-out, and saves to archives."""

from airflow_provider_artiload.transfer.load import load
from airflow_provider_artiload.transfer.plan import LoadOptions
from airflow_provider_artiload.transfer.save import save_image, save_source

__all__ = ["LoadOptions", "load", "save_image", "save_source"]
