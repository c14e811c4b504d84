"""A prefix cache over hashed token blocks, bounded and least-recently-used, like vLLM's.

Block i's key hashes block i's tokens together with block i-1's key, so a block is found only
when the whole prefix before it matches.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["PrefixCache"]


class PrefixCache:
    def __init__(self, capacity_tokens: int, block_size: int) -> None:
        self.block_size = block_size
        self.capacity_blocks = capacity_tokens // block_size
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def _keys(self, tokens: list[int]) -> list[int]:
        keys, previous = [], 0
        for start in range(0, len(tokens) - self.block_size + 1, self.block_size):
            previous = hash((previous, tuple(tokens[start : start + self.block_size])))
            keys.append(previous)
        return keys

    def lookup(self, tokens: list[int]) -> int:
        """Tokens of `tokens` already cached (whole leading blocks), touching those blocks.

        At least one token is always left to compute, as engines need the last token's logits.
        """
        hits = 0
        for key in self._keys(tokens):
            if key not in self._blocks:
                break
            self._blocks.move_to_end(key)
            hits += 1
        return min(hits * self.block_size, max(0, len(tokens) - 1))

    def insert(self, tokens: list[int]) -> None:
        """Cache every whole block of `tokens`, evicting the least recently used."""
        if self.capacity_blocks <= 0:
            return
        for key in self._keys(tokens):
            self._blocks[key] = None
            self._blocks.move_to_end(key)
        while len(self._blocks) > self.capacity_blocks:
            self._blocks.popitem(last=False)

    def __len__(self) -> int:
        return len(self._blocks)
