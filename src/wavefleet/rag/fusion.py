"""Fusing ranked lists: reciprocal rank fusion and a convex combination of normalised scores.

    rrf([bm25_hits, dense_hits], k=60)              # Cormack et al. 2009: sum of 1 / (k + rank)
    convex(bm25_hits, dense_hits, alpha=0.5)        # alpha * dense + (1 - alpha) * bm25, min-max

Each input is [(id, score), ...] best first. RRF reads ranks only, so it needs no calibration
but is sensitive to k (Bruch et al., ACM TOIS 2023); the convex combination reads scores, after
scaling each list to [0, 1] by its own minimum and maximum (a hit missing from a list counts 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

__all__ = ["Hits", "Mode", "convex", "min_max", "rrf"]

Hits = list[tuple[int, float]]


class Mode(StrEnum):
    """How retrieval ranks: one method alone or both fused."""

    HYBRID = "hybrid"  # BM25 and dense, fused (RRF or convex, see Fusion)
    DENSE = "dense"
    BM25 = "bm25"


def rrf(lists: Sequence[Hits], k: float = 60.0) -> Hits:
    """Reciprocal rank fusion: each id scores the sum over lists of 1 / (k + rank), rank from 1."""
    if k < 0:
        raise ValueError("RRF's k must be 0 or more")
    scores: dict[int, float] = {}
    for hits in lists:
        for rank, (key, _) in enumerate(hits, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def min_max(hits: Hits) -> dict[int, float]:
    """Scores scaled to [0, 1] within the list; a list of equal scores maps to 1."""
    if not hits:
        return {}
    values = [score for _, score in hits]
    low, high = min(values), max(values)
    span = high - low
    return {key: (score - low) / span if span > 0 else 1.0 for key, score in hits}


def convex(bm25: Hits, dense: Hits, alpha: float = 0.5) -> Hits:
    """alpha * normalised dense score + (1 - alpha) * normalised BM25 score."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError("the convex weight alpha must be within [0, 1]")
    lexical, semantic = min_max(bm25), min_max(dense)
    keys = set(lexical) | set(semantic)
    fused = {key: alpha * semantic.get(key, 0.0) + (1 - alpha) * lexical.get(key, 0.0) for key in keys}
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))
