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
