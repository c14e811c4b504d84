"""Cutting documents into overlapping windows of tokens, each with its place in the document.

    chunker = Chunker(Tokenizer.from_file(model.tokenizer), size=512, overlap=150)
    for chunk in chunker.chunks(doc):
        chunk.start, chunk.end, chunk.heading, chunk.page, chunk.text
        chunker.embedding_text(chunk)   # what the model embeds: heading over text, cut to its window

Tokens are the embedding model's own (its `tokenizer.json`, through Hugging Face's `tokenizers`),
so a chunk of 512 tokens is 512 tokens to the model. Windows never cross a section (a page of a
PDF, a heading's part of Markdown or HTML), so each chunk has one page or heading to cite. A
chunk's span is the characters from its first token's start to its last token's end.

The model embeds a chunk's heading over its text, which with the model's [CLS] and [SEP] can
be longer than it reads at once (`window`, 512 tokens for all-MiniLM-L6-v2). The embedding text
is cut to the window here, because an engine may refuse a longer input rather than cut it
(llama-server answers 500); the cut tokens stay in the chunk's text, its BM25 entry and the
next chunk's overlap.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wavefleet.errors import UsageError
from wavefleet.rag.documents import ParsedDocument

__all__ = ["Chunk", "Chunker", "EmbeddingWindow", "load_tokenizer"]


@dataclass(frozen=True, slots=True)
class Chunk:
    ordinal: int
    start: int
    end: int
    text: str
    heading: str | None
    page: int | None
    tokens: int


def load_tokenizer(path: Path) -> Any:
    """The model's tokenizer without the padding and truncation its file asks for (the chunker
    needs every token and its offsets)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


class EmbeddingWindow:
    """The tokens the embedding model reads at once, its special tokens included."""

    def __init__(self, tokenizer: Any, tokens: int = 512) -> None:
        self._tokenizer = tokenizer
        self._room = tokens - len(tokenizer.encode("", add_special_tokens=True).ids)
        if self._room < 8:
            raise UsageError(f"an embedding window of {tokens} tokens holds no text; the model's is 512")

    def fit(self, text: str) -> str:
        """`text`, cut after the last token that fits."""
        offsets = self._tokenizer.encode(text, add_special_tokens=False).offsets
        return text if len(offsets) <= self._room else text[: offsets[self._room - 1][1]]


class Chunker:
    """Windows of `size` tokens that overlap by `overlap` tokens, within each section."""

    def __init__(self, tokenizer: Any, *, size: int = 512, overlap: int = 150, window: int = 512) -> None:
        if size < 8:
            raise UsageError(f"--chunk-tokens {size}: too small to hold a sentence; use 64 or more")
        if not 0 <= overlap < size:
            raise UsageError(
                f"--overlap-tokens {overlap} must be at least 0 and under --chunk-tokens ({size})"
            )
        self._tokenizer = tokenizer
        self.size = size
        self.overlap = overlap
        self.window = EmbeddingWindow(tokenizer, window)

    def embedding_text(self, chunk: Chunk) -> str:
        """The chunk's heading over its text, cut to the tokens the model reads at once."""
        return self.window.fit(f"{chunk.heading}\n{chunk.text}" if chunk.heading else chunk.text)

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def chunks(self, doc: ParsedDocument) -> Iterator[Chunk]:
        ordinal = 0
        step = self.size - self.overlap
        for section in doc.sections:
            body = doc.text[section.start : section.end]
            offsets = [
                o for o in self._tokenizer.encode(body, add_special_tokens=False).offsets if o[1] > o[0]
            ]
            first = 0
            while first < len(offsets):
                last = min(first + self.size, len(offsets))
                start = section.start + offsets[first][0]
                end = section.start + offsets[last - 1][1]
                yield Chunk(
                    ordinal,
                    start,
                    end,
                    doc.text[start:end],
                    section.heading,
                    section.page,
                    last - first,
                )
                ordinal += 1
                if last == len(offsets):
                    break
                first += step
