"""Fusion of ranked lists: reciprocal rank fusion and the convex combination."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wavefleet.rag.fusion import convex, min_max, rrf

ranked = st.lists(st.tuples(st.integers(0, 50), st.floats(-100, 100)), max_size=30, unique_by=lambda t: t[0])


def test_rrf_rewards_agreement_between_lists() -> None:
    bm25 = [(1, 9.0), (2, 8.0), (3, 7.0)]
    dense = [(3, 0.9), (4, 0.8), (1, 0.7)]
    fused = [key for key, _ in rrf([bm25, dense], k=60)]
    assert fused[:2] == [1, 3]  # in both lists beats first in one
    assert set(fused) == {1, 2, 3, 4}


def test_small_rrf_k_lets_a_first_place_win_over_consensus() -> None:
    bm25 = [(7, 1.0), (1, 0.9), (2, 0.8)]
    dense = [(8, 1.0), (2, 0.9), (1, 0.8)]
    assert rrf([bm25, dense], k=0)[0][0] in (7, 8)  # 1/1 beats 1/2 + 1/3
    assert rrf([bm25, dense], k=60)[0][0] in (1, 2)  # 1/61 < 1/62 + 1/63


def test_convex_weights_move_the_winner() -> None:
    bm25 = [(1, 10.0), (2, 1.0)]
    dense = [(2, 0.9), (1, 0.1)]
    assert convex(bm25, dense, alpha=0.0)[0][0] == 1
    assert convex(bm25, dense, alpha=1.0)[0][0] == 2


@given(ranked)
def test_min_max_maps_into_unit_interval(hits: list[tuple[int, float]]) -> None:
    scaled = min_max(hits)
    assert set(scaled) == {k for k, _ in hits}
    assert all(0.0 <= v <= 1.0 for v in scaled.values())


@given(ranked, ranked, st.floats(0, 1))
def test_convex_keeps_every_candidate_once(
    a: list[tuple[int, float]], b: list[tuple[int, float]], alpha: float
) -> None:
    fused = convex(a, b, alpha)
    keys = [k for k, _ in fused]
    assert sorted(keys) == sorted({k for k, _ in a} | {k for k, _ in b})
    assert [s for _, s in fused] == sorted((s for _, s in fused), reverse=True)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="alpha"):
        convex([], [], alpha=1.5)
    with pytest.raises(ValueError, match="k"):
        rrf([], k=-1)
