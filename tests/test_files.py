from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from wavefleet.errors import ConfigError
from wavefleet.files import load_model, write_atomic


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: int


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    items: list[Inner]


def test_error_names_file_line_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("name: a\nitems:\n  - port: 1\n  - port: nope\n  - port: 3\n    colour: red\n")
    with pytest.raises(ConfigError) as info:
        load_model(Outer, path)
    text = str(info.value)
    assert f"{path}:4: items.1.port" in text
    assert f"{path}:6: items.2.colour" in text
    assert "remove 'colour'" in text
    assert info.value.exit_code == 2


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: a\nitems: [\n  {port: 1\n")
    with pytest.raises(ConfigError) as info:
        load_model(Outer, path)
    assert f"{path}:" in str(info.value)
    assert "not valid YAML" in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_model(Outer, tmp_path / "none.yaml")


def test_write_atomic_leaves_old_content_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")

    class Boom(Exception):
        pass

    from wavefleet.files import atomic_writer

    with pytest.raises(Boom), atomic_writer(target) as handle:
        handle.write("half")
        raise Boom
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]
    write_atomic(target, "new")
    assert target.read_text() == "new"
