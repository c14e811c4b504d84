"""Answers with citations: retrieved chunks become numbered sources in the prompt, the model cites
them as [n], and the answer carries them twice: a `Sources:` list at the end of its text and a
`citations` field (source, page, heading, span, score) beside `choices`.

    prompt = build_messages(messages, hits)
    cited = cited_numbers(answer_text, len(hits))      # [1, 3]
    citations_json(hits, cited)                         # the structured field
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from wavefleet.rag.retrieve import Hit

__all__ = [
    "SYSTEM_PROMPT",
    "build_messages",
    "cited_numbers",
    "citations_json",
    "last_user_text",
    "sources_footer",
]

SYSTEM_PROMPT = (
    "Answer the question using only the numbered sources below. After each statement, cite the "
    "source it comes from as [1], [2], ... If the sources do not contain the answer, say that "
    "you do not know. Be brief."
)
_CITATION = re.compile(r"\[(\d{1,3})\]")


def last_user_text(messages: Sequence[dict[str, Any]]) -> str:
    """The text of the last user message: what retrieval searches for."""
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(
                    part["text"]
                    for part in content
                    if isinstance(part, dict) and isinstance(part.get("text"), str)
                )
    return ""


def _source_block(number: int, hit: Hit) -> str:
    return f"[{number}] {hit.place()}\n{hit.text.strip()}"


def build_messages(messages: Sequence[dict[str, Any]], hits: Sequence[Hit]) -> list[dict[str, Any]]:
    """The conversation with the sources put in: a system message with the instructions and the
    numbered sources, then the person's messages unchanged (their own system messages follow)."""
    sources = "\n\n".join(_source_block(i, hit) for i, hit in enumerate(hits, start=1))
    system = (
        f"{SYSTEM_PROMPT}\n\nSources:\n\n{sources}" if hits else f"{SYSTEM_PROMPT}\n\nSources: none found."
    )
    return [{"role": "system", "content": system}, *messages]


def cited_numbers(text: str, count: int) -> list[int]:
    """The source numbers the text cites, in first-cited order, within 1..count."""
    seen: dict[int, None] = {}
    for match in _CITATION.finditer(text):
        number = int(match.group(1))
        if 1 <= number <= count:
            seen.setdefault(number, None)
    return list(seen)


def citations_json(hits: Sequence[Hit], cited: Sequence[int]) -> list[dict[str, Any]]:
    """Every retrieved source with its number, place and whether the answer cites it."""
    return [
        {
            "index": number,
            "source": hit.path,
            "title": hit.title,
            "page": hit.page,
            "heading": hit.heading,
            "start": hit.start,
            "end": hit.end,
            "score": round(hit.score, 6),
            "cited": number in cited,
            "text": hit.text,
        }
        for number, hit in enumerate(hits, start=1)
    ]


def sources_footer(hits: Sequence[Hit], cited: Sequence[int]) -> str:
    """`Sources:` lines for what the answer cites (all retrieved ones when it cites none)."""
    if not hits:
        return ""
    numbers = list(cited) or list(range(1, len(hits) + 1))
    label = "Sources" if cited else "Retrieved (not cited)"
    lines = [f"[{n}] {hits[n - 1].place()}" for n in numbers]
    return f"\n\n{label}:\n" + "\n".join(lines)
