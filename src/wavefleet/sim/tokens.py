"""A fake tokenizer: one token per whitespace-separated word, so usage counts are exact and cheap.

Token ids are a stable hash of the word, so equal prompt prefixes give equal ids (the prefix cache
needs that) across processes and runs.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence

__all__ = ["FAKE_WORDS", "chat_prompt_text", "encode", "fake_words"]

FAKE_WORDS: tuple[str, ...] = (
    "wave", "fleet", "token", "engine", "batch", "cache", "prefix", "slot", "queue", "decode",
    "prefill", "kernel", "tensor", "stream", "router", "gateway", "jetson", "desktop", "model", "latency",
)  # fmt: skip


def encode(text: str) -> list[int]:
    """Token ids for `text`: one per word."""
    return [zlib.crc32(word.encode()) for word in text.split()]


def chat_prompt_text(messages: Sequence[object]) -> str:
    """The text a chat prompt is counted on: one role marker word per message, then its content."""
    parts: list[str] = []
    for message in messages:
        if not isinstance(message, dict):
            raise ValueError("each message must be an object with role and content")
        parts.append(f"<|{message.get('role', 'user')}|>")
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return " ".join(parts)


def fake_words(count: int, rng: random.Random) -> list[str]:
    """`count` words of output text, one token each."""
    return [rng.choice(FAKE_WORDS) for _ in range(count)]
