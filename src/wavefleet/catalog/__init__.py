"""The sourced catalog: hardware, models, quantizations and services."""

from wavefleet.catalog.loader import Catalog, default_data_dir
from wavefleet.catalog.models import (
    Access,
    CatalogEntry,
    DeviceKind,
    Hardware,
    Membership,
    ModelArch,
    Platform,
    Quantization,
    Service,
    Source,
)

__all__ = [
    "Access",
    "Catalog",
    "CatalogEntry",
    "DeviceKind",
    "Hardware",
    "Membership",
    "ModelArch",
    "Platform",
    "Quantization",
    "Service",
    "Source",
    "default_data_dir",
]
