"""Ingest with the real embedding model: incremental by content hash, resumable, index rebuilt."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from wavefleet.errors import EngineError, UsageError
from wavefleet.rag.chunking import Chunker, load_tokenizer
from wavefleet.rag.embedder import LocalEmbedder, Vectors
from wavefleet.rag.ingest import ingest, plan_ingest
from wavefleet.rag.model import bundled_model, ensure_gguf
from wavefleet.rag.paths import collection_dir
from wavefleet.rag.retrieve import RetrievalSettings, Retriever
from wavefleet.rag.store import Collection

NOTES = {
    "boiler.txt": "The boiler is serviced every October by Jan, phone 555-0101.",
    "garden.md": "# Garden\n\nTomatoes want full sun.\n\n## Pests\n\nAphids go with soapy water.\n",
    "car.html": "<h1>Car</h1><p>Oil change every 10,000 km.</p><h2>Tyres</h2><p>Winter tyres in November.</p>",
    "bins.txt": "Recycling is collected on Thursdays; garden waste every other Monday.",
}


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEmbedder]:
    model = bundled_model()
    local = LocalEmbedder(ensure_gguf(model, tmp_path_factory.mktemp("models")), name=model.name)
    local.load()
    yield local


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    return Chunker(load_tokenizer(bundled_model().tokenizer), size=64, overlap=16)


class StopsAfter:
    """The real embedder that fails once `calls` batches have gone through (an engine that dies)."""

    def __init__(self, inner: LocalEmbedder, calls: int) -> None:
        self.inner, self.left, self.name = inner, calls, inner.name

    async def embed(self, texts: Sequence[str]) -> Vectors:
        if self.left == 0:
            raise EngineError("the embedding engine went away")
        self.left -= 1
        return await self.inner.embed(texts)

    async def aclose(self) -> None:
        return None


def write_notes(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in NOTES.items():
        (directory / name).write_text(text)
    return directory


def run(collection: Collection, paths: list[Path], chunker: Chunker, embedder: object) -> object:
    plan = plan_ingest(collection, paths)
    return asyncio.run(ingest(collection, plan, chunker=chunker, embedder=embedder))  # type: ignore[arg-type]


def top_path(collection: Collection, embedder: LocalEmbedder, query: str, mode: str = "hybrid") -> str:
    retriever = Retriever(collection, embedder)
    result = asyncio.run(retriever.search(query, RetrievalSettings(mode=mode, top_k=1)))  # type: ignore[arg-type]
    retriever.close()
    return Path(result.hits[0].path).name if result.hits else ""


def test_ingest_is_incremental_by_content(tmp_path: Path, embedder: LocalEmbedder, chunker: Chunker) -> None:
    notes = write_notes(tmp_path / "notes")
    collection = Collection(tmp_path / "rag" / "collections" / "home", create=True)
    first = run(collection, [notes], chunker, embedder)
    assert (first.added, first.updated, first.removed) == (4, 0, 0)  # type: ignore[attr-defined]
    assert top_path(collection, embedder, "when do the winter tyres go on?") == "car.html"

    again = plan_ingest(collection, [notes])
    assert not again.todo and len(again.unchanged) == 4

    (notes / "boiler.txt").write_text("The heat pump replaced the boiler; it needs no yearly service.")
    (notes / "bins.txt").unlink()
    plan = plan_ingest(collection, [notes])
    assert [p.name for p, _ in plan.todo] == ["boiler.txt"]
    assert [Path(p).name for p in plan.removed] == ["bins.txt"]
    second = run(collection, [notes], chunker, embedder)
    assert (second.added, second.updated, second.removed, second.unchanged) == (0, 1, 1, 2)  # type: ignore[attr-defined]
    assert "bins.txt" not in {Path(p).name for p in collection.documents()}
    assert collection.bm25("recycling thursdays", 5) == []
    assert collection._frequencies(["recycling", "heat", "boiler"]) == {
        "recycling": 0,
        "heat": 1,
        "boiler": 1,
    }
    assert top_path(collection, embedder, "heat pump", mode="bm25") == "boiler.txt"
    index = collection.open_index()
    assert len(index) == collection.info().chunks
    # what ingest saved holds the collection as it is: the next run or server opens it as is
    reopened = Collection(tmp_path / "rag" / "collections" / "home")
    rebuilt: list[int] = []
    reopened.open_index(on_rebuild=rebuilt.append)
    reopened.open_lexicon(on_rebuild=rebuilt.append)
    assert rebuilt == [] and len(reopened.open_lexicon()) == reopened.info().chunks
    assert reopened.bm25("heat pump", 5) == reopened.fts5_bm25("heat pump", 5)


def test_an_interrupted_ingest_keeps_whole_documents_and_continues(
    tmp_path: Path, embedder: LocalEmbedder, chunker: Chunker
) -> None:
    notes = write_notes(tmp_path / "notes")
    collection = Collection(tmp_path / "collections" / "home", create=True)
    with pytest.raises(EngineError):
        run(collection, [notes], chunker, StopsAfter(embedder, calls=2))
    assert len(collection.documents()) == 2  # each finished document was committed whole
    counting = StopsAfter(embedder, calls=100)
    report = run(collection, [notes], chunker, counting)
    assert report.added == 2 and report.unchanged == 2  # type: ignore[attr-defined]
    assert counting.left == 98  # only the two missing documents were embedded
    reopened = Collection(tmp_path / "collections" / "home")
    assert len(reopened.open_index()) == reopened.info().chunks


def test_a_missing_or_stale_graph_is_rebuilt_from_the_stored_vectors(
    tmp_path: Path, embedder: LocalEmbedder, chunker: Chunker
) -> None:
    notes = write_notes(tmp_path / "notes")
    collection = Collection(tmp_path / "collections" / "home", create=True)
    run(collection, [notes], chunker, embedder)
    collection.close()
    (tmp_path / "collections" / "home" / "vectors.hnsw").unlink()
    reopened = Collection(tmp_path / "collections" / "home")
    rebuilt: list[int] = []
    index = reopened.open_index(on_rebuild=rebuilt.append)
    assert rebuilt == [reopened.info().chunks] and len(index) == rebuilt[0]
    assert top_path(reopened, embedder, "soapy water for aphids", mode="dense") == "garden.md"


def test_another_embedding_model_is_refused(
    tmp_path: Path, embedder: LocalEmbedder, chunker: Chunker
) -> None:
    collection = Collection(tmp_path / "collections" / "home", create=True)
    run(collection, [write_notes(tmp_path / "notes")], chunker, embedder)
    with pytest.raises(UsageError, match="vectors of two models do not compare"):
        collection.settle(embed_model="nomic-embed-text", chunk_tokens=64, overlap_tokens=16)


def test_unreadable_files_are_reported_and_the_rest_ingested(
    tmp_path: Path, embedder: LocalEmbedder, chunker: Chunker
) -> None:
    notes = write_notes(tmp_path / "notes")
    (notes / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    collection = Collection(tmp_path / "collections" / "home", create=True)
    report = run(collection, [notes], chunker, embedder)
    assert report.added == 4  # type: ignore[attr-defined]
    assert [Path(p).name for p, _ in report.failed] == ["broken.pdf"]  # type: ignore[attr-defined]


def test_bad_collection_names_and_missing_paths_say_what_to_do(tmp_path: Path) -> None:
    for name in ("../etc", "a/b", ".hidden", "x" * 65):
        with pytest.raises(UsageError, match="letters, digits"):
            collection_dir(tmp_path, name)
    with pytest.raises(UsageError, match="wave rag ingest"):
        Collection(tmp_path / "collections" / "nothing")
    collection = Collection(tmp_path / "collections" / "home", create=True)
    with pytest.raises(UsageError, match="no such file"):
        plan_ingest(collection, [tmp_path / "missing"])


def test_a_corrupt_graph_file_is_rebuilt(tmp_path: Path, embedder: LocalEmbedder, chunker: Chunker) -> None:
    collection = Collection(tmp_path / "collections" / "home", create=True)
    run(collection, [write_notes(tmp_path / "notes")], chunker, embedder)
    collection.close()
    (tmp_path / "collections" / "home" / "vectors.hnsw").write_bytes(b"not a graph at all")
    reopened = Collection(tmp_path / "collections" / "home")
    assert len(reopened.open_index()) == reopened.info().chunks


@pytest.fixture(scope="module")
def embed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The documented embedding engine (docs/rag.md): `llama-server --embedding --pooling mean -m
    GGUF`. It refuses an input longer than the model reads at once instead of cutting it."""
    from test_llama_server import RunningServer, installed_binary, wait_until_ready
    from wavefleet.agent.process import free_port

    folder = tmp_path_factory.mktemp("embed-server")
    binary = installed_binary()
    port = free_port()
    argv = [
        str(binary.path),
        "--embedding",
        "--pooling",
        "mean",
        "-m",
        str(ensure_gguf(bundled_model(), folder)),
    ]
    argv += ["--host", "127.0.0.1", "--port", str(port), "-t", "1"]
    log = folder / "embed.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    server = RunningServer(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_until_ready(server, deadline_s=120)
        yield f"{server.url}/v1"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_full_chunks_and_long_questions_fit_a_llama_server_embedding_engine(
    tmp_path: Path, embed_server: str
) -> None:
    """A 512-token chunk under its heading, and a question longer than the model's window, both
    with [CLS] and [SEP], are cut to the window before they are sent."""
    from wavefleet.rag.embedder import HttpEmbedder

    model = bundled_model()
    notes = tmp_path / "notes"
    notes.mkdir()
    words = " ".join(f"word{n} is checked" for n in range(400))  # ~2,000 tokens: full chunks
    (notes / "long.md").write_text(f"# Quarterly maintenance schedule for the house\n\n{words}\n")
    collection = Collection(tmp_path / "collections" / "long", create=True)
    chunker = Chunker(load_tokenizer(model.tokenizer), size=512, overlap=150, window=model.max_tokens)

    async def ingest_and_ask() -> tuple[object, list[str]]:
        embedder = HttpEmbedder(url=embed_server, model=model.name)
        try:
            report = await ingest(
                collection, plan_ingest(collection, [notes]), chunker=chunker, embedder=embedder
            )
            retriever = Retriever(collection, embedder, window=chunker.window)
            question = "which word is checked in the quarterly maintenance schedule? " + words
            result = await retriever.search(question, RetrievalSettings(mode="dense", top_k=2))  # type: ignore[arg-type]
            retriever.close()
            return report, [Path(hit.path).name for hit in result.hits]
        finally:
            await embedder.aclose()

    report, found = asyncio.run(ingest_and_ask())
    assert report.added == 1  # type: ignore[attr-defined]
    assert collection.info().chunks >= 3
    assert found == ["long.md", "long.md"]
