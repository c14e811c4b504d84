"""An approximate prefix index per backend, as llm-d's and SGLang's routers keep one.

The prompt's leading text is cut into 64-character blocks (~16 tokens), each keyed by a hash
chained over the blocks before it, so a block key stands for the whole prefix up to it. Each
backend remembers the keys of the prompts routed to it (LRU, bounded), which is what its engine's
prefix cache most likely still holds. The index learns from routing decisions only: no engine
events, no tokenizer. It is an estimate: the engine may have evicted what the index remembers.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["BLOCK_CHARS", "CHARS_PER_TOKEN", "PrefixIndex", "block_keys"]

BLOCK_CHARS = 64
CHARS_PER_TOKEN = 4  # the gateway's prompt estimate (api.estimate_prompt) uses the same ratio
MAX_BLOCKS = 64  # 4096 characters: enough to tell conversations apart behind a shared system prompt


def block_keys(text: str, seed: str = "") -> list[int]:
    """Chained hashes of the full 64-char blocks of `text` (a trailing partial block is left out)."""
    keys: list[int] = []
    key = hash(seed)
    end = min(len(text) // BLOCK_CHARS, MAX_BLOCKS) * BLOCK_CHARS
    for start in range(0, end, BLOCK_CHARS):
        key = hash((key, text[start : start + BLOCK_CHARS]))
        keys.append(key)
    return keys


class PrefixIndex:
    """Block keys per backend, each backend's set bounded by LRU eviction."""

    def __init__(self, blocks_per_backend: int) -> None:
        self._limit = blocks_per_backend
        self._blocks: dict[str, OrderedDict[int, None]] = {}

    def matched(self, backend: str, keys: list[int]) -> int:
        """How many leading blocks of `keys` the backend holds (binary search: keys are chained)."""
        blocks = self._blocks.get(backend)
        if not blocks or not keys or keys[0] not in blocks:
            return 0
        low, high = 1, len(keys)  # keys[:low] are held; find the largest such low
        while low < high:
            middle = (low + high + 1) // 2
            if keys[middle - 1] in blocks:
                low = middle
            else:
                high = middle - 1
        return low

    def add(self, backend: str, keys: list[int]) -> None:
        """Remember that `backend` got this prefix; the oldest blocks go when it holds too many."""
        blocks = self._blocks.get(backend)
        if blocks is None:
            blocks = self._blocks[backend] = OrderedDict()
        # deepest block first, so the first blocks are the most recent and LRU evicts from the
        # deep end: what remains is always a leading run, which keeps `matched`'s search valid
        for key in reversed(keys):
            if key in blocks:
                blocks.move_to_end(key)
            else:
                blocks[key] = None
        while len(blocks) > self._limit:
            blocks.popitem(last=False)

    def size(self, backend: str) -> int:
        return len(self._blocks.get(backend, ()))
