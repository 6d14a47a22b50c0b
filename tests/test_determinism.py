"""Two runs on one machine give byte-identical outputs, whatever PYTHONHASHSEED is.

Byte-identity holds only on one machine: another CPU computes the embeddings through other
kernels, and the numbers move in their fourth decimal (test_pipeline compares the committed
metrics with a tolerance instead). The whole pipeline's rerun is in test_pipeline; these cover the
stages whose ordering once depended on string hashing, and training.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, TINY_MODEL, write_lines, write_params

HASH_SEEDS = ("1", "2")


def run_stage(stage: str, *args: str | Path, hash_seed: str, **env: str) -> str:
    """The stage's stderr (its log) after a successful run."""
    env = dict(os.environ, PYTHONHASHSEED=hash_seed, HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="", **env)
    result = subprocess.run([sys.executable, "-m", f"zh_retrieval.stages.{stage}", *map(str, args)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


def files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def write_run(path: Path, run: dict[str, dict[str, float]], tag: str) -> Path:
    path.write_text("".join(f"{q} Q0 {d} {rank} {score:.6f} {tag}\n" for q, docs in run.items()
                            for rank, (d, score) in enumerate(docs.items(), start=1)), encoding="utf-8")
    return path


def test_hybrid_outputs_do_not_depend_on_the_hash_seed(tmp_path: Path) -> None:
    query_ids = [f"query-{n}" for n in range(40)]
    prepared, bm25_dir, dense_dir = tmp_path / "prepared", tmp_path / "bm25", tmp_path / "dense"
    for split in ("dev", "test"):
        (prepared / split).mkdir(parents=True)
        write_lines(prepared / split / "queries.jsonl", [{"query_id": q, "query": f"问题{q}"} for q in query_ids])
        (prepared / split / "qrels.tsv").write_text("".join(f"{q} 0 doc-{n % 7} 1\n" for n, q in enumerate(query_ids)))
        # Each run misses some queries, so the fused query set is a union of the two.
        dense = {q: {f"doc-{(n + i) % 9}": 1.0 - i / 10 for i in range(5)} for n, q in enumerate(query_ids) if n % 5}
        sparse = {q: {f"doc-{(n * 3 + i) % 11}": 20.0 - i for i in range(5)} for n, q in enumerate(query_ids) if n % 3}
        (dense_dir / split / "maxp").mkdir(parents=True)
        (bm25_dir / split).mkdir(parents=True)
        write_run(dense_dir / split / "maxp" / "run.trec", dense, "dense")
        write_run(bm25_dir / split / "run.trec", sparse, "bm25")

    outputs = []
    for seed in HASH_SEEDS:
        out, metrics = tmp_path / f"hybrid-{seed}", tmp_path / f"metrics-{seed}"
        run_stage("evaluate_hybrid", bm25_dir, dense_dir, prepared, out, metrics, "--params", ROOT / "params.yaml",
                   hash_seed=seed)
        outputs.append({**files(out), **files(metrics)})
    assert outputs[0].keys() == {f"{split}/{path}" for split in ("dev", "test") for path in (
        "rrf/run.trec", "rrf/per_query.jsonl", "weighted/run.trec", "weighted/per_query.jsonl", "hybrid_rrf.json",
        "hybrid_weighted.json")} | {"hybrid_grid.json"}
    assert outputs[0] == outputs[1]


def test_finetune_is_byte_reproducible(tmp_path: Path) -> None:
    params = write_params(tmp_path / "params.yaml", {"finetune.epochs": 1, "finetune.batch_size": 4,
                                                     "finetune.train_group_size": 3, "embedding.passage_max_len": 48,
                                                     "long_documents.overlap": 8})
    corpus = [json.loads(line)["text"] for line in (ROOT / "data/sample/corpus.jsonl").open(encoding="utf-8")][:40]
    train = write_lines(tmp_path / "train.jsonl", [
        {"query": doc[:12], "pos": [doc], "neg": [corpus[(i + 1) % len(corpus)], corpus[(i + 7) % len(corpus)]]}
        for i, doc in enumerate(corpus)
    ])

    out, runs, logs = tmp_path / "finetuned", [], []
    for seed, verbose in zip(HASH_SEEDS, ("", "1")):
        logs.append(run_stage("finetune", TINY_MODEL, train, out, "--params", params, hash_seed=seed,
                               ZH_RETRIEVAL_VERBOSE=verbose))
        runs.append(files(out))
        shutil.rmtree(out)  # the next run writes the same path, so training_args.json can match too
    assert "model.safetensors" in runs[0] and runs[0].keys() == runs[1].keys()
    different = [name for name in runs[0] if runs[0][name] != runs[1][name]]
    assert not different, f"two runs on this machine differ in {different}"

    # Quiet by default: one summary line instead of FlagEmbedding's ~180-line argument dump and its
    # "distributed training: True" for one CPU process; ZH_RETRIEVAL_VERBOSE=1 brings them back.
    quiet, verbose = logs
    assert "fine-tuning " in quiet and "lr 0.0001, epochs 1, batch 4 (1 process), groups of 3" in quiet
    assert "Training/evaluation parameters" not in quiet and "distributed training" not in quiet
    assert len(quiet.splitlines()) < len(verbose.splitlines()) - 100
    assert "Training/evaluation parameters" in verbose
