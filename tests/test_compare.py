"""Per-query files and the comparison of two evaluations."""

from __future__ import annotations

import json
from pathlib import Path

from zh_retrieval.reporting.compare import compare, read_per_query, summary
from zh_retrieval.retrieval.metrics import score_run


def test_per_query_file_and_comparison(tmp_path: Path) -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 1}}
    before = {"q1": {"a": 0.9, "x": 0.1}, "q2": {"x": 0.9, "b": 0.1}, "q3": {"c": 0.5}}
    after = {"q1": {"x": 0.9, "a": 0.1}, "q2": {"b": 0.9, "x": 0.1}, "q3": {"c": 0.5}}
    for name, run in (("before", before), ("after", after)):
        (tmp_path / name).mkdir()
        score_run(qrels, run, (1, 10), tmp_path / name, name)
    rows = [json.loads(line) for line in (tmp_path / "before" / "per_query.jsonl").read_text().splitlines()]
    assert [(r["query_id"], r["first_relevant_rank"], r["recall_at_1"]) for r in rows] == [
        ("q1", 1, 1.0), ("q2", 2, 0.0), ("q3", 1, 1.0)]
    changes = compare(read_per_query(tmp_path / "before"), read_per_query(tmp_path / "after"), "recall_at_1")
    assert [(c.query_id, c.delta, c.rank_before, c.rank_after) for c in changes] == [
        ("q2", 1.0, 2, 1), ("q3", 0.0, 1, 1), ("q1", -1.0, 1, 2)]
    assert summary(changes) == {"improved": 1, "unchanged": 1, "degraded": 1}
