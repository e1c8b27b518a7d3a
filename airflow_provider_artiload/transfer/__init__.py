"""Moving images: plans, load targets, sources, the fan-out, and saves to archives."""

from airflow_provider_artiload.transfer.load import LoadOptions, load, save_image, save_source

__all__ = ["LoadOptions", "load", "save_image", "save_source"]
