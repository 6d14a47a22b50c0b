"""Reciprocal rank and weighted score fusion, by hand."""

from __future__ import annotations

import pytest

from zh_retrieval.retrieval.fusion import reciprocal_rank_fusion, top, weighted_fusion


def test_reciprocal_rank_fusion_by_hand() -> None:
    dense = {"q": {"a": 0.9, "b": 0.8}}
    sparse = {"q": {"b": 12.0, "c": 3.0}}
    fused = reciprocal_rank_fusion([dense, sparse], rrf_k=60)["q"]
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["a"] == pytest.approx(1 / 61) and fused["c"] == pytest.approx(1 / 62)


def test_weighted_fusion_normalises_each_run() -> None:
    dense = {"q": {"a": 0.9, "b": 0.5}}
    sparse = {"q": {"b": 20.0, "c": 10.0}}
    fused = weighted_fusion(dense, sparse, dense_weight=0.25)["q"]
    assert fused == pytest.approx({"a": 0.25, "b": 0.75, "c": 0.0})
    assert list(top({"q": fused}, 2)["q"]) == ["b", "a"]


def test_weighted_rrf_and_the_grids_ends_rank_as_one_run_alone() -> None:
    """A dense weight of 0 ranks as BM25 alone and 1 as the dense run alone, by either fusion: the grid's
    ends, which keep a hybrid chosen on dev from falling below its better part there."""
    dense = {"q": {"a": 0.9, "b": 0.8, "d": 0.1}}
    sparse = {"q": {"c": 12.0, "b": 11.0, "e": 3.0}}
    fused = reciprocal_rank_fusion([dense, sparse], rrf_k=10, weights=[0.25, 0.75])["q"]
    assert fused["b"] == pytest.approx(0.25 / 12 + 0.75 / 12) and fused["a"] == pytest.approx(0.25 / 11)
    rrf = lambda w: reciprocal_rank_fusion([dense, sparse], 60, [w, 1 - w])  # noqa: E731
    assert list(top(rrf(0.0), 3)["q"]) == ["c", "b", "e"] and list(top(rrf(1.0), 3)["q"]) == ["a", "b", "d"]
    # Min-max puts a run's last document at 0, level with the documents it lacks: the rest is its order.
    weighted = lambda w: weighted_fusion(dense, sparse, w)  # noqa: E731
    assert list(top(weighted(0.0), 2)["q"]) == ["c", "b"] and list(top(weighted(1.0), 2)["q"]) == ["a", "b"]
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([dense, sparse], 60, [1.0])
