"""Reading typed YAML files with line numbers in their errors, and writing files whole or not at all.

Every file format in Wavefleet (inventory, catalog, gateway config) is a pydantic model, most of
them built on `FrozenModel`. A file is parsed once into plain data and once into YAML nodes; the
nodes give each key path its line, so a validation error can name the file, the line, and how to
fix it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from wavefleet.errors import ConfigError, ConfigProblem

__all__ = ["FrozenModel", "atomic_writer", "load_model", "read_yaml", "validation_problems", "write_atomic"]

Model = TypeVar("Model", bound=BaseModel)
KeyPath = tuple[str | int, ...]


class FrozenModel(BaseModel):
    """Base of the records Wavefleet reads and renders: an unknown key is an error (a typo in a file
    is reported, not ignored) and a record cannot change once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def read_yaml(path: Path) -> tuple[Any, dict[KeyPath, int]]:
    """Parse a YAML file into data and a map from key path to its 1-based line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError([ConfigProblem(path, None, "", "file not found", "check the path")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(path, None, "", "not UTF-8 text", "save it as UTF-8")]) from exc
    try:
        node, data = _parse(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = f"not valid YAML: {exc.problem or exc}"
        fix = "check indentation, colons and quotes on this line and the one before"
        raise ConfigError([ConfigProblem(path, line, "", problem, fix)]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem(path, None, "", f"not valid YAML: {exc}", "")]) from exc
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _collect_lines(node, (), lines)
    return data, lines


# libyaml's parser when PyYAML was built with it (about 10x faster than the pure-Python one).
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse(text: str) -> tuple[yaml.Node | None, Any]:
    """Parse once: the node tree (for line numbers) and the data built from that same tree."""
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return node, data


def _collect_lines(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (path + (str(key_node.value),)) if isinstance(key_node, yaml.ScalarNode) else path
            lines[key] = key_node.start_mark.line + 1
            _collect_lines(value_node, key, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[path + (index,)] = item.start_mark.line + 1
            _collect_lines(item, path + (index,), lines)


def validation_problems(
    exc: ValidationError, path: Path | str, lines: dict[KeyPath, int]
) -> list[ConfigProblem]:
    """Turn pydantic's errors into problems that name file, line and a fix."""
    problems = []
    for error in exc.errors(include_url=False):
        loc: KeyPath = tuple(part for part in error["loc"] if isinstance(part, str | int))
        line = _line_of(loc, lines)
        where = ".".join(str(part) for part in loc)
        problems.append(ConfigProblem(path, line, where, error["msg"], _fix_for(error, loc)))
    return problems


def _line_of(loc: KeyPath, lines: dict[KeyPath, int]) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _fix_for(error: Any, loc: KeyPath) -> str:
    kind = error["type"]
    name = str(loc[-1]) if loc else "field"
    if kind == "extra_forbidden":
        return f"remove {name!r} or correct its spelling (unknown field)"
    if kind == "missing":
        return f"add {name!r}"
    if kind in ("enum", "literal_error"):
        return "use one of the values listed"
    if kind.endswith(("_parsing", "_type")):
        return f"give {name!r} a value of the expected type"
    if "greater" in kind or "less" in kind:
        return f"give {name!r} a value inside the allowed range"
    ctx = error.get("ctx") or {}
    if "error" in ctx:
        return str(ctx["error"])
    return ""


def load_model(model: type[Model], path: Path) -> Model:
    """Read `path` as YAML and validate it as `model`; errors carry file and line."""
    data, lines = read_yaml(path)
    if data is None:
        raise ConfigError(
            [ConfigProblem(path, None, "", "the file is empty", "see examples/ for a template")]
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, path, lines)) from exc


@contextmanager
def atomic_writer(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temporary file beside `path` and rename it over `path` only if all went well."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write `content` to `path` whole, or leave `path` as it was."""
    with atomic_writer(path, "wb" if isinstance(content, bytes) else "w") as handle:
        handle.write(content)
