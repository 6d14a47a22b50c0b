"""evaluate_hybrid chooses each fusion's point on dev and scores test there, once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, write_lines, write_params

QUERIES = [f"q{n}" for n in range(6)]
DOCS = [f"d{n}" for n in range(6)]


def ranking(first: str) -> dict[str, float]:
    """Every document, `first` on top, the rest in a fixed order below it."""
    return {first: 10.0, **{d: 5.0 - i for i, d in enumerate(d for d in DOCS if d != first)}}


def wrong(query: int) -> str:
    return DOCS[(query + 1) % len(DOCS)]


def write_run(path: Path, run: dict[str, dict[str, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{q} Q0 {d} {rank} {score:.6f} t\n" for q, docs in run.items()
                            for rank, (d, score) in enumerate(sorted(docs.items(), key=lambda x: -x[1]), start=1)))


def setup(tmp_path: Path, dense_kind: str) -> tuple[Path, Path, Path]:
    """On dev the dense run puts each query's relevant document first and BM25 a wrong one; on test the
    other way round. Query n's relevant document is dn."""
    prepared, bm25, dense = tmp_path / "prepared", tmp_path / "bm25", tmp_path / "dense"
    good = {q: ranking(DOCS[n]) for n, q in enumerate(QUERIES)}
    bad = {q: ranking(wrong(n)) for n, q in enumerate(QUERIES)}
    for split, (dense_run, bm25_run) in {"dev": (good, bad), "test": (bad, good)}.items():
        (prepared / split).mkdir(parents=True)
        write_lines(prepared / split / "queries.jsonl", [{"query_id": q, "query": "问"} for q in QUERIES])
        (prepared / split / "qrels.tsv").write_text("".join(f"{q} 0 {DOCS[n]} 1\n" for n, q in enumerate(QUERIES)))
        write_run(dense / split / ("maxp" if dense_kind == "maxp" else "") / "run.trec", dense_run)
        write_run(bm25 / split / "run.trec", bm25_run)
    return prepared, bm25, dense


@pytest.mark.parametrize("dense_kind", ["maxp", "truncated"])
def test_the_point_dev_chooses_is_the_one_test_is_scored_at(tmp_path: Path, dense_kind: str) -> None:
    prepared, bm25, dense = setup(tmp_path, dense_kind)
    overrides = {"hybrid.dense_weights": [0.0, 0.5, 1.0], "hybrid.rrf_ks": [10, 60]}
    if dense_kind == "truncated":  # MaxP off: mining's passage choices must be off too
        overrides |= {"long_documents.maxp": False, "mine.positive": "truncated", "mine.guard": "truncated",
                      "mine.negative_text": "truncated"}
    params = write_params(tmp_path / "params.yaml", overrides)
    metrics = tmp_path / "metrics"
    result = subprocess.run([sys.executable, "-m", "zh_retrieval.stages.evaluate_hybrid", str(bm25), str(dense),
                             str(prepared), str(tmp_path / "out"), str(metrics), "--params", str(params)],
                            capture_output=True, text=True, cwd=ROOT, env=dict(os.environ), timeout=120)
    assert result.returncode == 0, result.stderr
    grid = json.loads((metrics / "hybrid_grid.json").read_text())
    assert grid["dense_run"] == dense_kind
    assert set(grid["dev_ndcg_at_10"]["weighted"]) == {"w0", "w0_5", "w1"}
    assert len(grid["dev_ndcg_at_10"]["rrf"]) == 6
    assert grid["dev_ndcg_at_10"]["weighted"]["w1"] == 1.0 and grid["dev_ndcg_at_10"]["weighted"]["w0"] < 1.0
    for method in ("weighted", "rrf"):
        dev = json.loads((metrics / "dev" / f"hybrid_{method}.json").read_text())
        test = json.loads((metrics / "test" / f"hybrid_{method}.json").read_text())
        assert dev["chosen_on_dev"]["dense_weight"] == test["chosen_on_dev"]["dense_weight"] == 1.0
        assert dev["ndcg_at_10"] == 1.0
        # Test is scored at dev's point, the dense run alone, which is wrong on test: never re-chosen there.
        assert test["ndcg_at_10"] < 1.0 and test["recall_at_1"] == 0.0
