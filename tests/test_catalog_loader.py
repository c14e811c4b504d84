from __future__ import annotations

from pathlib import Path

import pytest

from wavefleet.catalog import Catalog
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
    data = Path(Catalog.load.__code__.co_filename).parent / "data"
    for name in ("hardware.yaml", "models.yaml", "quantizations.yaml", "services.yaml"):
        (tmp_path / name).write_text((data / name).read_text())
    text = (tmp_path / "models.yaml").read_text().replace("layers: 32", "layers: -1", 1)
    (tmp_path / "models.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        Catalog.load(tmp_path)
    assert "models.yaml:" in str(info.value)
    assert "layers" in str(info.value)
