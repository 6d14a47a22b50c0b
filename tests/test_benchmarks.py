"""The scale benchmark runs end to end on a small corpus, so its figures keep coming from the pipeline's code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import ROOT, write_params


def test_scale_benchmark_runs_every_stage_on_a_small_synthetic_corpus(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--documents", "150", "--train-queries", "50",
         "--test-queries", "20", "--keep", str(tmp_path)],
        capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout.split("| stage |", 1)[1]
    for stage in ("prepare", "evaluate_bm25", "cut", "mine-cutting", "mine", "mine's search with guard: truncated",
                  "evaluate base (MaxP)", "evaluate_hybrid", "report"):
        assert f"| {stage} |" in table
    work = tmp_path / "scale-150"
    # The dataset is in MLDR's layout, ~4,250 characters a document, and embed's files agree with it.
    texts = [json.loads(line)["text"] for line in (work / "dataset" / "corpus.jsonl").open(encoding="utf-8")]
    assert len(texts) == 150 and 3_500 < np.mean([len(t) for t in texts]) < 5_000
    passage_doc = np.load(work / "embeddings" / "passage_doc.npy")
    assert np.load(work / "embeddings" / "passages.npy").dtype == np.float16
    assert len(np.unique(passage_doc)) == 150 and len(passage_doc) > 1_000
    mined = [json.loads(line) for line in (work / "mined" / "train.jsonl").open(encoding="utf-8")]
    assert len(mined) == 50 and all(len(row["neg"]) == 7 for row in mined)
    # Reading the cut's spans gives the rows cutting again gave.
    assert (work / "mined" / "train.jsonl").read_bytes() == (work / "mined-cutting" / "train.jsonl").read_bytes()
    assert json.loads((work / "metrics" / "test" / "bm25.json").read_text())["num_corpus"] == 150
    assert json.loads((work / "metrics" / "dev" / "base.json").read_text())["num_queries"] == 5
    assert (work / "report.md").read_text(encoding="utf-8").startswith("# Results")


def run_benchmark(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


# The quick modes below keep every benchmark the docs name running, on the tiny model and little
# data: their figures come from full runs (docs/speed-and-memory.md). benchmarks/gpu_suite.sh only
# runs gpu_encode.py, bf16_weights.py, gpu_train.py and scripts/gpu_smoke.py (the pipeline on CUDA) one
# after another.


def test_encode_benchmark_compares_the_three_encoders() -> None:
    out = run_benchmark("encode.py", "--texts", "8", "--max-length", "64", "--repeats", "1")
    assert "flagmodel (fp32)" in out and "sentence_transformers (fp32)" in out
    assert "sample nDCG@10 (tiny model)" in out and "ratio_vs_flagmodel=" in out


def test_fp16_passages_benchmark_scores_maxp_both_ways(dataset_dir: Path, tmp_path: Path) -> None:
    params = write_params(tmp_path / "params.yaml", {"dataset": str(dataset_dir), "embedding.passage_max_len": 8,
                                                     "long_documents.overlap": 2})
    out = run_benchmark("fp16_passages.py", "--models", str(ROOT / "models" / "tiny-bert-zh"), "--precisions", "fp32",
                        "--params", str(params))
    row = next(line for line in out.splitlines() if line.startswith("| tiny-bert-zh | fp32 |"))
    # Two test queries: one near-tie that fp16 rounding reorders on some CPU moves a metric by a lot,
    # so the quick mode checks the table's shape; the demo's figure is in docs/speed-and-memory.md.
    cells = [cell.strip() for cell in row.strip(" |").split("|")]
    ndcg_fp32, ndcg_fp16 = (float(value) for value in cells[2].split(" / "))
    assert 0 <= ndcg_fp32 <= 1 and 0 <= ndcg_fp16 <= 1 and 0 <= float(cells[4]) <= 1, row


def test_memory_benchmark_measures_each_stage() -> None:
    out = run_benchmark("memory.py", "--sizes", "30", "--no-sample")
    documents, embed, untrimmed, evaluate, on_disk = out.strip().splitlines()[-1].split()
    assert documents == "30" and min(float(embed), float(untrimmed), float(evaluate)) > 0, out
    assert float(on_disk) >= 0, out


def test_gpu_benchmarks_run_on_the_cpu_as_a_plumbing_check() -> None:
    encode = run_benchmark("gpu_encode.py", "--device", "cpu", "--layers", "2", "--hidden", "64", "--tokens", "64",
                           "--texts", "16", "--batch-sizes", "8", "--repeats", "1")
    assert "forward, bf16 weights" in encode
    train = run_benchmark("gpu_train.py", "--device", "cpu", "--layers", "2", "--hidden", "64", "--tokens", "64",
                          "--batch", "2", "--group", "2", "--warmup", "1", "--steps", "1")
    assert train.splitlines()[-1].split()[0] == "on"


def test_feed_benchmark_times_the_three_feeds_on_full_passages() -> None:
    out = run_benchmark("feed.py", "--passages", "64", "--batch-size", "16", "--repeats", "1")
    assert "passages of 512 tokens" in out
    rates = {line.split(":")[0]: float(line.split(":")[1].split()[0].replace(",", "")) for line in out.splitlines()
             if line.endswith("passages/s")}
    assert set(rates) == {"tokenizer padding", "tokenizer + NumPy padding", "token ids + NumPy padding"}
    assert min(rates.values()) > 0


def test_bf16_weights_benchmark_prints_both_bf16_paths_against_fp32() -> None:
    out = run_benchmark("bf16_weights.py", "--device", "cpu", "--model", str(ROOT / "models" / "zh-mini-embedder"),
                        "--texts", "16")
    rows = {line[28:42].strip(): [float(v) for v in line[42:].split()] for line in out.splitlines()
            if line.startswith("zh-mini-embedder")}
    assert set(rows) == {"bf16 autocast", "bf16 weights"}, out
    assert all(0.99 < low <= p1 <= mean <= 1.0001 for low, p1, mean in rows.values()), out
