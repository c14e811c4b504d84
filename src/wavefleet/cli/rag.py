"""`wave rag`: ingest documents, search them, serve the embedding model, measure retrieval."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from wavefleet.errors import UsageError
from wavefleet.terminal import fit, folding_table

__all__ = ["rag"]

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8080/v1"


def _data_dir_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="Where collections live [env WAVE_RAG_DIR; default $XDG_DATA_HOME/wavefleet/rag].",
    )(command)


def _engine_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option(
                "--engine",
                type=click.Choice(["fleet", "local"]),
                default="fleet",
                show_default=True,
                help="fleet: embed through --url (the gateway, or an engine); local: run the bundled "
                "model in this process (no server needed, same vectors).",
            ),
            click.option(
                "--url",
                default=DEFAULT_URL,
                show_default=True,
                envvar="WAVE_URL",
                help="OpenAI-compatible base URL whose /embeddings serves --embed-model [env WAVE_URL].",
            ),
            click.option(
                "--api-key", envvar="WAVE_API_KEY", default=None, help="Key for --url [env WAVE_API_KEY]."
            ),
            click.option(
                "--embed-model",
                default=None,
                help="The embedding model's name at --url [default: all-minilm-l6-v2, the bundled one].",
            ),
            click.option(
                "--threads",
                type=int,
                default=1,
                show_default=True,
                help="llama.cpp threads (--engine local).",
            ),
        ]
    ):
        command = option(command)
    return command


def _run(coroutine: Awaitable[T]) -> T:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


def _embedder(
    engine: str, url: str, api_key: str | None, embed_model: str | None, threads: int, root: Path
) -> Any:
    from wavefleet.rag.embedder import HttpEmbedder, LocalEmbedder
    from wavefleet.rag.model import BUNDLED_MODEL_NAME, bundled_model, ensure_gguf
    from wavefleet.rag.paths import models_dir

    if engine == "local":
        if embed_model not in (None, BUNDLED_MODEL_NAME):
            raise UsageError(
                f"--engine local runs the bundled {BUNDLED_MODEL_NAME}; for {embed_model!r} use --engine fleet"
            )
        model = bundled_model()
        return LocalEmbedder(ensure_gguf(model, models_dir(root)), name=model.name, threads=threads)
    return HttpEmbedder(url=url, model=embed_model or BUNDLED_MODEL_NAME, api_key=api_key)


def _chunker(size: int, overlap: int) -> Any:
    from wavefleet.rag.chunking import Chunker, load_tokenizer
    from wavefleet.rag.model import bundled_model

    model = bundled_model()
    return Chunker(load_tokenizer(model.tokenizer), size=size, overlap=overlap, window=model.max_tokens)


@click.group()
def rag() -> None:
    """Retrieval over your own documents: ingest, search, answer with citations, measure.

    \b
    A first run, all on this machine:
      wave rag embed-server --port 8082 &            # the bundled all-MiniLM-L6-v2 (llama.cpp)
      wave rag ingest ~/notes --collection notes --url http://127.0.0.1:8082/v1
      wave rag search notes "when is the boiler serviced?"
    Without a server: add --engine local to ingest and search (same model, in-process).

    \b
    Through the gateway: list the embedding engine as a backend and add a `rag:` section to
    wave.yaml; then any OpenAI client asks model "rag/notes" and gets a cited answer.
    `wave rag eval` measures retrieval on a labelled set (a bundled one by default).
    See docs/rag.md.
    """


@rag.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--collection", "-c", required=True, help="Collection to add to (created if new).")
@click.option(
    "--chunk-tokens", type=int, default=512, show_default=True, help="Tokens a chunk (the model's tokenizer)."
)
@click.option(
    "--overlap-tokens", type=int, default=150, show_default=True, help="Tokens shared by neighbouring chunks."
)
@_engine_options
@_data_dir_option
def ingest(
    paths: tuple[Path, ...],
    collection: str,
    chunk_tokens: int,
    overlap_tokens: int,
    engine: str,
    url: str,
    api_key: str | None,
    embed_model: str | None,
    threads: int,
    data_dir: Path | None,
) -> None:
    """Add files and directories to a collection: .txt .md .html .pdf (.rst .text .markdown .htm).

    \b
    Incremental: unchanged files (same SHA-256) are skipped, changed ones replaced, and files
    gone from a directory you ingest again are removed. Interrupted? Run the same command: it
    continues where it stopped (each finished document is already stored).

    \b
    Examples:
      wave rag ingest ~/notes ~/papers/manual.pdf -c home
      wave rag ingest docs -c project --chunk-tokens 256 --overlap-tokens 64 --engine local
    """
    from wavefleet.rag.ingest import ingest as run_ingest
    from wavefleet.rag.ingest import plan_ingest
    from wavefleet.rag.paths import collection_dir, resolve_data_dir
    from wavefleet.rag.store import Collection

    console = Console(stderr=True, highlight=False)
    root = resolve_data_dir(data_dir)
    chunker = _chunker(chunk_tokens, overlap_tokens)
    store = Collection(collection_dir(root, collection), create=True)
    plan = plan_ingest(store, list(paths))
    console.print(
        f"{collection}: {len(plan.todo)} to ingest, {len(plan.unchanged)} unchanged, "
        f"{len(plan.removed)} to remove"
        + (f", {len(plan.skipped)} skipped (not a kind read)" if plan.skipped else "")
    )
    embedder = _embedder(engine, url, api_key, embed_model, threads, root)

    async def go() -> Any:
        columns = (
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[chunks]} chunks"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task("ingest", total=max(plan.todo_bytes, 1), chunks=0)
            try:
                return await run_ingest(
                    store,
                    plan,
                    chunker=chunker,
                    embedder=embedder,
                    progress=lambda done, chunks: bar.update(task, completed=done, chunks=chunks),
                )
            finally:
                await embedder.aclose()

    try:
        report = _run(go())
    except KeyboardInterrupt:
        console.print("interrupted: finished documents are stored; run the same command to continue")
        raise SystemExit(130) from None
    finally:
        store.close()
    console.print(
        f"{report.added} added, {report.updated} updated, {report.unchanged} unchanged, {report.removed} removed; "
        f"{report.chunks} chunks in {report.seconds:.1f} s ({report.chunks_per_s:.1f} chunks/s, "
        f"{report.embed_seconds:.1f} s embedding)"
    )
    for path, reason in report.failed:
        console.print(f"[red]failed[/] {path}: {reason}")
    if report.failed:
        raise SystemExit(1)


@rag.command()
@click.argument("collection")
@click.argument("query")
@click.option("--mode", type=click.Choice(["hybrid", "dense", "bm25"]), default="hybrid", show_default=True)
@click.option(
    "--fusion",
    type=click.Choice(["rrf", "convex"]),
    default="convex",
    show_default=True,
    help="How hybrid fuses.",
)
@click.option("--rrf-k", type=float, default=60.0, show_default=True, help="RRF's k.")
@click.option("--alpha", type=float, default=0.5, show_default=True, help="Convex fusion's dense weight.")
@click.option("--top-k", type=int, default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the hits as JSON.")
@_engine_options
@_data_dir_option
def search(
    collection: str,
    query: str,
    mode: str,
    fusion: str,
    rrf_k: float,
    alpha: float,
    top_k: int,
    as_json: bool,
    engine: str,
    url: str,
    api_key: str | None,
    embed_model: str | None,
    threads: int,
    data_dir: Path | None,
) -> None:
    """Find the chunks of COLLECTION that answer QUERY, with their place and score.

    \b
    Examples:
      wave rag search home "when is the boiler serviced?"
      wave rag search home "boiler" --mode bm25 --top-k 3 --json
    """
    from pydantic import ValidationError

    from wavefleet.rag.config import RetrievalSettings
    from wavefleet.rag.model import bundled_model
    from wavefleet.rag.paths import collection_dir, resolve_data_dir
    from wavefleet.rag.retrieve import Retriever
    from wavefleet.rag.store import Collection

    try:
        settings = RetrievalSettings.model_validate(
            {"mode": mode, "fusion": fusion, "rrf_k": rrf_k, "alpha": alpha, "top_k": top_k}
        )
    except ValidationError as exc:
        raise UsageError(f"search options: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from exc
    root = resolve_data_dir(data_dir)
    store = Collection(collection_dir(root, collection))
    embedder = _embedder(engine, url, api_key, embed_model or store.meta().get("embed_model"), threads, root)
    retriever = Retriever(store, embedder, window=bundled_model().window())

    async def go() -> Any:
        try:
            return await retriever.search(query, settings)
        finally:
            await embedder.aclose()

    result = _run(go())
    retriever.close()
    if as_json:
        hits = [
            {
                "score": h.score,
                "source": h.path,
                "page": h.page,
                "heading": h.heading,
                "start": h.start,
                "end": h.end,
                "text": h.text,
            }
            for h in result.hits
        ]
        click.echo(
            json.dumps({"hits": hits, "embed_ms": result.embed_ms, "search_ms": result.search_ms}, indent=2)
        )
        return
    console = Console(highlight=False)
    for number, hit in enumerate(result.hits, start=1):
        console.print(f"[bold][{number}][/] {hit.place()}  [dim]score {hit.score:.4f}[/]")
        snippet = " ".join(hit.text.split())
        console.print(f"    {snippet[:300]}{'…' if len(snippet) > 300 else ''}")
    console.print(f"[dim]embed {result.embed_ms:.1f} ms, search {result.search_ms:.1f} ms[/]")


@rag.command(name="list")
@_data_dir_option
def list_(data_dir: Path | None) -> None:
    """The collections, with documents, chunks, model and size."""
    from wavefleet.rag.paths import collection_dir, resolve_data_dir
    from wavefleet.rag.store import Collection, collection_names

    root = resolve_data_dir(data_dir)
    console = Console(highlight=False)
    names = collection_names(root)
    if not names:
        console.print(f"no collections in {root}; make one with `wave rag ingest PATH --collection NAME`")
        return
    table = folding_table("collection", "documents", "chunks", "model", "chunking", "size", title=str(root))
    for name in names:
        info = Collection(collection_dir(root, name)).info()
        table.add_row(
            name,
            str(info.documents),
            str(info.chunks),
            f"{info.embed_model} ({info.dimension}-d)",
            f"{info.chunk_tokens}/{info.overlap_tokens}",
            f"{info.bytes_on_disk / 1e6:.1f} MB",
        )
    console.print(fit(table, console))


@rag.command()
@click.argument("collection")
@click.option("--yes", is_flag=True, help="Do not ask.")
@_data_dir_option
def drop(collection: str, yes: bool, data_dir: Path | None) -> None:
    """Delete a collection (its index and chunks; your files are untouched)."""
    from wavefleet.rag.paths import collection_dir, resolve_data_dir
    from wavefleet.rag.store import Collection

    directory = collection_dir(resolve_data_dir(data_dir), collection)
    Collection(directory).close()  # a clear error when there is no such collection
    if not yes:
        click.confirm(f"delete collection {collection!r} ({directory})?", abort=True)
    shutil.rmtree(directory)
    click.echo(f"dropped {collection}")


@rag.command(name="model")
@_data_dir_option
def model_(data_dir: Path | None) -> None:
    """Print the bundled embedding model's GGUF file (written on first use), for llama-server.

    \b
    llama-server --embedding -m "$(wave rag model)" --port 8082   # same vectors as embed-server
    """
    from wavefleet.rag.model import bundled_model, ensure_gguf
    from wavefleet.rag.paths import models_dir, resolve_data_dir

    click.echo(ensure_gguf(bundled_model(), models_dir(resolve_data_dir(data_dir))))


@rag.command(name="embed-server")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8082, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, help="llama.cpp threads.")
@click.option(
    "--max-batch", type=int, default=64, show_default=True, help="Texts embedded in one pass at most."
)
@_data_dir_option
def embed_server(host: str, port: int, threads: int, max_batch: int, data_dir: Path | None) -> None:
    """Serve the bundled embedding model on OpenAI's /v1/embeddings (llama.cpp, CPU).

    \b
    List it in the gateway's wave.yaml so documents and queries embed through the fleet:
      backends:
        - {name: embed, url: "http://127.0.0.1:8082", kind: openai, models: [all-minilm-l6-v2]}
    """
    from aiohttp import web

    from wavefleet.rag.embed_server import build_embed_app
    from wavefleet.rag.embedder import LocalEmbedder
    from wavefleet.rag.model import bundled_model, ensure_gguf
    from wavefleet.rag.paths import models_dir, resolve_data_dir

    model = bundled_model()
    gguf = ensure_gguf(model, models_dir(resolve_data_dir(data_dir)))
    embedder = LocalEmbedder(gguf, name=model.name, threads=threads, max_batch=max_batch)
    Console(stderr=True, highlight=False).print(f"serving {model.name} on http://{host}:{port}/v1/embeddings")
    web.run_app(build_embed_app(embedder), host=host, port=port, print=None, access_log=None)


@rag.command(name="eval")
@click.option(
    "--collection",
    "-c",
    default=None,
    help="Collection to measure [default: the bundled set, ingested as pydoc-eval].",
)
@click.option(
    "--queries",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Labelled set (JSONL), or BEIR queries.jsonl with --qrels.",
)
@click.option(
    "--qrels", type=click.Path(path_type=Path, dir_okay=False), default=None, help="BEIR qrels TSV."
)
@click.option(
    "--corpus",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="BEIR corpus.jsonl to ingest into --collection first.",
)
@click.option(
    "--mode",
    "modes",
    multiple=True,
    type=click.Choice(["hybrid", "dense", "bm25"]),
    help="Repeatable [default: all three].",
)
@click.option("--fusion", type=click.Choice(["rrf", "convex"]), default="convex", show_default=True)
@click.option(
    "--rrf-k", "rrf_ks", type=float, multiple=True, help="RRF k values to compare (repeatable) [default: 60]."
)
@click.option(
    "--alpha",
    "alphas",
    type=float,
    multiple=True,
    help="Convex weights to compare (repeatable) [default: 0.5].",
)
@click.option("--chunk-tokens", type=int, default=512, show_default=True)
@click.option("--overlap-tokens", type=int, default=150, show_default=True)
@click.option(
    "--answers-model",
    default=None,
    help="Also generate answers with this model at --answers-url and score their citations.",
)
@click.option(
    "--answers-url", default=DEFAULT_URL, show_default=True, help="OpenAI endpoint for --answers-model."
)
@click.option(
    "--answers-top-k", type=int, default=5, show_default=True, help="Sources given to --answers-model."
)
@click.option("--limit", type=int, default=None, help="Only the first N queries.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@_engine_options
@_data_dir_option
def eval_(
    collection: str | None,
    queries: Path | None,
    qrels: Path | None,
    corpus: Path | None,
    modes: tuple[str, ...],
    fusion: str,
    rrf_ks: tuple[float, ...],
    alphas: tuple[float, ...],
    chunk_tokens: int,
    overlap_tokens: int,
    answers_model: str | None,
    answers_url: str,
    answers_top_k: int,
    limit: int | None,
    as_json: bool,
    engine: str,
    url: str,
    api_key: str | None,
    embed_model: str | None,
    threads: int,
    data_dir: Path | None,
) -> None:
    """Measure retrieval on a labelled set: nDCG@10, recall@5/@10, MRR@10, answer in context.

    \b
    With no options it uses the bundled set: 77 hand-written questions over the 79 topics of
    Python's own documentation (pydoc_data.topics, PSF licence), ingested once as pydoc-eval.
    A document's id is its file name without the suffix.

    \b
    Examples:
      wave rag eval --engine local                                   # bundled set, 3 modes
      wave rag eval --engine local --rrf-k 10 --rrf-k 60 --fusion rrf
      wave rag eval -c mine --queries labelled.jsonl
      wave rag eval -c scifact --corpus corpus.jsonl --queries queries.jsonl --qrels test.tsv
    """
    from wavefleet.rag.config import RetrievalSettings
    from wavefleet.rag.evaluate import (
        evaluate_answers,
        evaluate_retrieval,
        load_beir,
        load_labelled,
        write_corpus,
    )
    from wavefleet.rag.ingest import ingest as run_ingest
    from wavefleet.rag.ingest import plan_ingest
    from wavefleet.rag.model import bundled_model
    from wavefleet.rag.paths import collection_dir, resolve_data_dir
    from wavefleet.rag.retrieve import Retriever
    from wavefleet.rag.store import Collection

    if (queries is None) != (collection is None) and corpus is None:
        raise UsageError(
            "give both --collection and --queries for your own set, or neither for the bundled one"
        )
    if qrels is not None and queries is None:
        raise UsageError("--qrels needs --queries (BEIR's queries.jsonl)")
    root = resolve_data_dir(data_dir)
    name = collection or "pydoc-eval"
    labelled = load_beir(queries, qrels) if queries and qrels else load_labelled(queries)
    labelled = labelled[:limit] if limit else labelled
    embedder = _embedder(engine, url, api_key, embed_model, threads, root)
    console = Console(stderr=True, highlight=False)
    store = Collection(collection_dir(root, name), create=collection is None or corpus is not None)
    plan = None
    if collection is None or corpus is not None:
        files = write_corpus(root / "corpora" / name, corpus)
        plan = plan_ingest(store, [root / "corpora" / name])
        if plan.todo or plan.removed:
            console.print(f"ingesting {len(plan.todo)} of {len(files)} documents into {name} ...")
    configs: list[tuple[str, RetrievalSettings]] = []
    for mode in modes or ("bm25", "dense", "hybrid"):
        if mode != "hybrid":
            configs.append((mode, RetrievalSettings.model_validate({"mode": mode})))
            continue
        if fusion == "rrf":
            for k in rrf_ks or (60.0,):
                settings = RetrievalSettings.model_validate({"mode": "hybrid", "fusion": "rrf", "rrf_k": k})
                configs.append((f"hybrid rrf k={k:g}", settings))
        else:
            for a in alphas or (0.5,):
                settings = RetrievalSettings.model_validate(
                    {"mode": "hybrid", "fusion": "convex", "alpha": a}
                )
                configs.append((f"hybrid convex a={a:g}", settings))
    retriever = Retriever(store, embedder, window=bundled_model().window())

    async def go() -> list[tuple[str, dict[str, float]]]:
        try:
            if plan is not None and (plan.todo or plan.removed):
                chunker = _chunker(chunk_tokens, overlap_tokens)
                await run_ingest(store, plan, chunker=chunker, embedder=embedder)
            rows = [(label, await evaluate_retrieval(retriever, labelled, s)) for label, s in configs]
            if answers_model is not None:
                answers = await evaluate_answers(
                    retriever,
                    labelled,
                    RetrievalSettings(),
                    url=answers_url,
                    model=answers_model,
                    api_key=api_key,
                )
                rows.append((f"answers by {answers_model}", answers))
            return rows
        finally:
            await embedder.aclose()

    started = time.perf_counter()
    results = _run(go())
    retriever.close()
    if as_json:
        click.echo(
            json.dumps({"collection": name, "queries": len(labelled), "results": dict(results)}, indent=2)
        )
        return
    columns = list(dict.fromkeys(c for _, values in results for c in values))
    table = folding_table(
        "retrieval",
        *columns,
        title=f"{name}: {len(labelled)} queries ({time.perf_counter() - started:.1f} s)",
    )
    for label, values in results:
        table.add_row(
            label,
            *(
                ("-" if c not in values else f"{values[c]:.1f}" if c == "ms" else f"{values[c]:.3f}")
                for c in columns
            ),
        )
    out = Console(highlight=False)
    out.print(fit(table, out))
