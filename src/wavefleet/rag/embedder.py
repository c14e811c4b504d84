"""Turning text into unit vectors: one contract, two implementations.

    embedder = HttpEmbedder(url="http://127.0.0.1:8080/v1", model="all-minilm-l6-v2", api_key=key)
    vectors = await embedder.embed(["first text", "second text"])   # (2, 384) float32, unit length
    await embedder.aclose()

`HttpEmbedder` calls an OpenAI `/v1/embeddings` endpoint: the gateway, which routes to the fleet's
embedding engine, or the engine itself. `LocalEmbedder` runs the GGUF model in this process
through llama.cpp; the embedding server (embed_server.py) serves it, and tests and `--engine
local` use it directly. Both give the same vectors for the same model file, so documents and
queries meet in one space wherever each was embedded.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import numpy as np

from wavefleet.errors import EngineError, UsageError
from wavefleet.extras import require

__all__ = ["Embedder", "HttpEmbedder", "LocalEmbedder", "Vectors", "unit_rows"]

Vectors = np.ndarray[Any, np.dtype[np.float32]]


class Embedder(Protocol):
    """Embeds texts into L2-normalised float32 rows, in order."""

    name: str

    async def embed(self, texts: Sequence[str]) -> Vectors: ...

    async def aclose(self) -> None: ...


def unit_rows(matrix: np.ndarray[Any, Any]) -> Vectors:
    """Rows scaled to length 1 (a zero row stays zero): cosine similarity becomes a dot product."""
    rows = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    scaled: Vectors = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
    return scaled


class HttpEmbedder:
    """An OpenAI-compatible `/v1/embeddings` endpoint, `batch` texts a request."""

    def __init__(
        self,
        *,
        url: str,
        model: str,
        api_key: str | None = None,
        batch: int = 32,
        timeout_s: float = 120.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.name = model
        self._owns_session = session is None
        self._endpoint = url.rstrip("/") + "/embeddings"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._batch = batch
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = session

    async def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            self._owns_session = True
        parts = [
            await self._request(self._session, list(texts[i : i + self._batch]))
            for i in range(0, len(texts), self._batch)
        ]
        return unit_rows(np.vstack(parts))

    async def _request(self, session: aiohttp.ClientSession, texts: list[str]) -> Vectors:
        # base64 (OpenAI's own client asks for it too): 4 bytes a dimension and no float
        # formatting or parsing on either side; an endpoint that answers floats anyway is read too.
        body = {"model": self.name, "input": texts, "encoding_format": "base64"}
        try:
            async with session.post(
                self._endpoint, json=body, headers=self._headers, timeout=self._timeout
            ) as response:
                payload = await response.json(content_type=None)
                status = response.status
        except aiohttp.ClientConnectionError as exc:
            raise EngineError(
                f"no embeddings endpoint answers at {self._endpoint} ({exc}); start one with "
                "`wave rag embed-server` and list it in the gateway's backends, or pass --url"
            ) from exc
        except (TimeoutError, ValueError) as exc:
            raise EngineError(f"{self._endpoint} gave no usable answer: {exc}") from exc
        if status != 200:
            message = payload.get("error", {}).get("message") if isinstance(payload, dict) else payload
            hint = ""
            if status == 404:
                hint = f"; is a backend serving {self.name!r} listed in the gateway (GET /v1/models)?"
            elif status == 401:
                hint = "; set WAVE_API_KEY (or --api-key) to a key the gateway accepts"
            raise EngineError(f"{self._endpoint} answered {status}: {message}{hint}")
        try:
            rows = sorted(payload["data"], key=lambda item: item["index"])
            matrix = np.asarray([_vector(row["embedding"]) for row in rows], dtype=np.float32)
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise EngineError(f"{self._endpoint} answered without OpenAI's `data[].embedding`") from exc
        if matrix.shape[0] != len(texts):
            raise EngineError(f"{self._endpoint} returned {matrix.shape[0]} vectors for {len(texts)} texts")
        return matrix

    async def aclose(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None


def _vector(embedding: object) -> np.ndarray[Any, Any]:
    """One `data[].embedding`: base64 of little-endian float32, or a list of numbers."""
    if isinstance(embedding, str):
        return np.frombuffer(base64.b64decode(embedding, validate=True), dtype="<f4")
    return np.asarray(embedding, dtype=np.float32)


@dataclass
class _Pending:
    texts: list[str]
    done: asyncio.Future[Vectors]


@dataclass
class _Queue:
    items: list[_Pending] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class LocalEmbedder:
    """A GGUF embedding model run by llama.cpp in this process.

    One llama.cpp context embeds on one worker thread. Requests that arrive while it works are
    gathered into the next pass (up to `max_batch` texts), so several clients share each
    forward pass instead of queueing one by one. Inputs longer than the model's context are cut
    to it (llama.cpp's own truncation); the chunker keeps chunks within it.
    """

    def __init__(
        self,
        gguf_path: Path,
        *,
        name: str,
        threads: int = 1,
        context: int = 512,
        max_batch: int = 64,
    ) -> None:
        self.name = name
        self._path = gguf_path
        self._threads = threads
        self.context = context
        self._max_batch = max_batch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        self._llama: Any = None
        self._queue: _Queue | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.dimension = 0

    def load(self) -> None:
        """Load the model (blocking; about a second). `embed` loads it on first use too."""
        if self._llama is not None:
            return
        require("llama_cpp", needed_by="embedding documents and questions locally")
        import llama_cpp  # heavy; only processes that embed load it

        try:
            self._llama = llama_cpp.Llama(
                model_path=str(self._path),
                embedding=True,
                n_ctx=self.context,
                n_batch=self.context,
                n_ubatch=self.context,
                n_seq_max=self._max_batch,
                # Without flash attention llama.cpp scores every token of a pass against every
                # other (the mask then hides other texts), so a gathered batch costs more per
                # text than texts one by one; with it a pass grows about linearly with its texts
                # (docs/measurements/2026-12-03-rag-query-cpu.md).
                flash_attn=True,
                n_threads=self._threads,
                n_threads_batch=self._threads,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise EngineError(f"llama.cpp could not load {self._path}: {exc}") from exc
        self.dimension = int(self._llama.n_embd())

    def embed_now(self, texts: Sequence[str]) -> Vectors:
        """Embed on the calling thread (blocking)."""
        self.load()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        rows = self._llama.embed(list(texts), normalize=False, truncate=True)
        return unit_rows(np.asarray(rows, dtype=np.float32))

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` with [CLS] and [SEP] (tokenizing reads only the vocabulary, so it
        may run beside an embedding pass)."""
        self.load()
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=True))

    async def embed(self, texts: Sequence[str]) -> Vectors:
        if any(not isinstance(t, str) for t in texts):
            raise UsageError("every input to embed must be a string")
        loop = asyncio.get_running_loop()
        if self._queue is None or self._loop is not loop:  # first use, or a new event loop
            self._loop = loop
            self._queue = _Queue()
            await loop.run_in_executor(self._executor, self.load)
            self._worker = asyncio.create_task(self._work(self._queue))
        done: asyncio.Future[Vectors] = loop.create_future()
        self._queue.items.append(_Pending(list(texts), done))
        self._queue.wake.set()
        return await done

    async def _work(self, queue: _Queue) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await queue.wake.wait()
            queue.wake.clear()
            while queue.items:
                taken: list[_Pending] = []
                count = 0
                while queue.items and (not taken or count + len(queue.items[0].texts) <= self._max_batch):
                    pending = queue.items.pop(0)
                    taken.append(pending)
                    count += len(pending.texts)
                texts = [t for p in taken for t in p.texts]
                try:
                    vectors = await loop.run_in_executor(self._executor, self.embed_now, texts)
                except Exception as exc:  # handed to each waiting request, which reports it
                    for pending in taken:
                        if not pending.done.done():
                            pending.done.set_exception(exc)
                    continue
                start = 0
                for pending in taken:
                    if not pending.done.done():
                        pending.done.set_result(vectors[start : start + len(pending.texts)])
                    start += len(pending.texts)

    async def aclose(self) -> None:
        if self._worker is not None and self._loop is asyncio.get_running_loop():
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        self._queue = None
        self._executor.shutdown(wait=True)
        if self._llama is not None:
            self._llama.close()
            self._llama = None
