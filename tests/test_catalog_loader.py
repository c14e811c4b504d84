from __future__ import annotations

from pathlib import Path

import pytest

from wavefleet.catalog import Catalog, default_data_dir
from wavefleet.errors import ConfigError, UnknownIdError


def test_shipped_catalog_loads_and_every_entry_has_a_source() -> None:
    catalog = Catalog.load()
    for kind in (catalog.hardware, catalog.models, catalog.quantizations, catalog.services):
        assert kind
        for entry in kind.values():
            assert entry.sources and all(source.ref for source in entry.sources)


def test_unknown_id_suggests_nearest() -> None:
    catalog = Catalog.load()
    with pytest.raises(UnknownIdError) as info:
        catalog.get_hardware("rtx-5070ti")
    assert "rtx-5070-ti" in info.value.suggestions


def test_broken_catalog_file_names_line(tmp_path: Path) -> None:
    for source in default_data_dir().glob("*.yaml"):
        (tmp_path / source.name).write_text(source.read_text())
    text = (tmp_path / "models.yaml").read_text().replace("layers: 32", "layers: -1", 1)
    (tmp_path / "models.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        Catalog.load(tmp_path)
    assert "models.yaml:" in str(info.value)
    assert "layers" in str(info.value)


def test_missing_catalog_file_is_named(tmp_path: Path) -> None:
    for source in default_data_dir().glob("*.yaml"):
        (tmp_path / source.name).write_text(source.read_text())
    (tmp_path / "memberships.yaml").unlink()
    with pytest.raises(ConfigError) as info:
        Catalog.load(tmp_path)
    assert "memberships.yaml" in str(info.value) and "not found" in str(info.value)


def test_bare_yaml_no_in_supported_devices_gets_a_clear_fix(tmp_path: Path) -> None:
    for source in default_data_dir().glob("*.yaml"):
        (tmp_path / source.name).write_text(source.read_text())
    text = (tmp_path / "services.yaml").read_text().replace('gtx-1650: "no"', "gtx-1650: no", 1)
    (tmp_path / "services.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        Catalog.load(tmp_path)
    assert "services.yaml:" in str(info.value)
    assert "quotes" in str(info.value)


def test_get_membership_and_find_across_kinds() -> None:
    catalog = Catalog.load()
    assert catalog.get_membership("ngc").program == "ngc"
    kinds = {kind for kind, _ in catalog.find("ngc")}
    assert kinds == {"services", "memberships"}
    with pytest.raises(UnknownIdError) as info:
        catalog.find("qwen3-8")
    assert "qwen3-8b" in info.value.suggestions
