"""The scale benchmark runs end to end on a small corpus, so its figures keep coming from the pipeline's code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import ROOT


def test_scale_benchmark_runs_every_stage_on_a_small_synthetic_corpus(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--documents", "300", "--train-queries", "100",
         "--test-queries", "20", "--keep", str(tmp_path)],
        capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout.split("| stage |", 1)[1]
    for stage in ("prepare", "evaluate_bm25", "mine", "mine's search with guard: document", "evaluate base (MaxP)",
                  "evaluate_hybrid", "report"):
        assert f"| {stage} |" in table
    work = tmp_path / "scale-300"
    # The dataset is in MLDR's layout, ~4,250 characters a document, and embed's files agree with it.
    texts = [json.loads(line)["text"] for line in (work / "dataset" / "corpus.jsonl").open(encoding="utf-8")]
    assert len(texts) == 300 and 3_500 < np.mean([len(t) for t in texts]) < 5_000
    passage_doc = np.load(work / "embeddings" / "passage_doc.npy")
    assert np.load(work / "embeddings" / "passages.npy").dtype == np.float16
    assert len(np.unique(passage_doc)) == 300 and len(passage_doc) > 2_000
    mined = [json.loads(line) for line in (work / "mined" / "train.jsonl").open(encoding="utf-8")]
    assert len(mined) == 100 and all(len(row["neg"]) == 7 for row in mined)
    assert json.loads((work / "metrics" / "bm25.json").read_text())["num_corpus"] == 300
    assert (work / "report.md").read_text(encoding="utf-8").startswith("# Results")
