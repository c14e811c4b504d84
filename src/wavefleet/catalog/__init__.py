"""The sourced catalog: hardware, models, quantizations, services and memberships."""

from wavefleet.catalog.loader import KIND_FILES, Catalog, default_data_dir
from wavefleet.catalog.models import (
    GOALS,
    Access,
    CatalogEntry,
    DeviceKind,
    Hardware,
    Membership,
    MembershipInfo,
    ModelArch,
    Platform,
    Quantization,
    Service,
    Source,
    Unlock,
)

__all__ = [
    "GOALS",
    "KIND_FILES",
    "Access",
    "Catalog",
    "CatalogEntry",
    "DeviceKind",
    "Hardware",
    "Membership",
    "MembershipInfo",
    "ModelArch",
    "Platform",
    "Quantization",
    "Service",
    "Source",
    "Unlock",
    "default_data_dir",
]
