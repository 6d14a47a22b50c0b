from __future__ import annotations

import math
from pathlib import Path

import pytest

from zh_retrieval.retrieval.metrics import (
    mean_metrics,
    per_query_metrics,
    ranked,
    read_trec_run,
    score_run,
    write_trec_run,
)

KS = (1, 5, 10)


@pytest.mark.parametrize(
    ("scores", "relevant", "expected"),
    [
        # relevant document first: every metric is 1
        ({"a": 0.9, "b": 0.5}, {"a"}, {"recall_at_1": 1, "ndcg_at_10": 1, "mrr_at_10": 1}),
        # relevant second: DCG 1/log2(3), ideal 1; reciprocal rank 1/2
        ({"a": 0.9, "b": 0.5}, {"b"}, {"recall_at_1": 0, "recall_at_5": 1, "ndcg_at_10": 1 / math.log2(3),
                                      "mrr_at_10": 0.5}),
        # two relevant at ranks 1 and 3: DCG 1 + 1/2, ideal 1 + 1/log2(3)
        ({"a": 0.9, "x": 0.8, "b": 0.7}, {"a", "b"},
         {"recall_at_1": 0.5, "ndcg_at_5": 1.5 / (1 + 1 / math.log2(3)), "mrr_at_10": 1}),
        # relevant at rank 11: outside every cut-off
        ({f"n{i:02d}": 1 - i / 100 for i in range(10)} | {"a": 0.01}, {"a"},
         {"recall_at_10": 0, "ndcg_at_10": 0, "mrr_at_10": 0}),
    ],
)
def test_hand_computed_metrics(scores: dict, relevant: set, expected: dict) -> None:
    qrels = {"q": {d: 1 for d in relevant}}
    got = per_query_metrics(qrels, {"q": scores}, KS)["q"]
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-4), name


def test_query_missing_from_run_counts_as_zero() -> None:
    qrels = {"hit": {"a": 1}, "miss": {"z": 1}}
    mean = mean_metrics(per_query_metrics(qrels, {"hit": {"a": 1.0}}, KS))
    assert mean["recall_at_1"] == pytest.approx(0.5)
    assert mean["ndcg_at_10"] == pytest.approx(0.5)


def test_ties_are_ranked_by_docid_descending_like_trec_eval() -> None:
    assert [d for d, _ in ranked({"a": 1.0, "c": 1.0, "b": 2.0, "ab": 1.0})] == ["b", "c", "ab", "a"]
    # trec_eval puts "c" before "a" on a tie, so only "c" relevant gives reciprocal rank 1
    assert per_query_metrics({"q": {"c": 1}}, {"q": {"a": 1.0, "c": 1.0}}, KS)["q"]["mrr_at_10"] == 1.0


def test_trec_run_round_trip(tmp_path: Path) -> None:
    run = {"q1": {"a": 0.5, "b": 0.75}, "q2": {"c": -0.25}}
    write_trec_run(tmp_path / "run.trec", run, "demo")
    lines = (tmp_path / "run.trec").read_text().splitlines()
    assert lines[0] == "q1 Q0 b 1 0.750000 demo"
    assert lines[1] == "q1 Q0 a 2 0.500000 demo"
    assert read_trec_run(tmp_path / "run.trec") == run


def test_metrics_split_by_evidence_group(tmp_path: Path) -> None:
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}}
    run = {"q1": {"d1": 2.0, "d9": 1.0}, "q2": {"d9": 2.0, "d2": 1.0}, "q3": {"d9": 1.0}}
    means = score_run(qrels, run, (1, 10), tmp_path, "t", {"q1": "first_passage", "q2": "later", "q3": "later"})
    assert means["by_evidence"]["first_passage"] == {"recall_at_1": 1.0, "ndcg_at_1": 1.0, "recall_at_10": 1.0,
                                                     "ndcg_at_10": 1.0, "mrr_at_10": 1.0, "queries": 1}
    later = means["by_evidence"]["later"]
    assert later["queries"] == 2 and later["recall_at_1"] == 0.0 and later["mrr_at_10"] == 0.25
    assert means["ndcg_at_1"] == 1 / 3
    assert "by_evidence" not in score_run(qrels, run, (1, 10), tmp_path, "t")
