"""Distillation: the teacher stage's scores, and `finetune.distill` reaching FlagEmbedding's trainer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TINY_MODEL, write_lines, write_params

sys.path.insert(0, str(ROOT / "scripts"))

import build_reranker  # noqa: E402

from zh_retrieval.core.params import load_params  # noqa: E402
from zh_retrieval.retrieval.rerank import cross_encoder_scores  # noqa: E402
from zh_retrieval.training.finetune import flag_arguments  # noqa: E402

ROWS = [{"query": f"怎样压缩文件{i}", "pos": [f"tar 和 gzip 压缩文件{i}"],
         "neg": [f"无关的说明{i}{j}" for j in range(3)], "pos_passages": [[f"d{i}", 0]]} for i in range(4)]


def stage(name: str, *args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"zh_retrieval.stages.{name}", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT)


def test_without_distillation_the_teacher_passes_mines_rows_on_unread(tmp_path: Path) -> None:
    train = write_lines(tmp_path / "train.jsonl", ROWS)
    params = write_params(tmp_path / "params.yaml", {})
    missing = tmp_path / "no-reranker"  # never loaded: a change of reranker cannot reach the embedder
    result = stage("teacher", missing, missing, train, tmp_path / "teacher", "--params", params)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "teacher" / "train.jsonl").read_bytes() == train.read_bytes()
    assert sorted(p.name for p in (tmp_path / "teacher").iterdir()) == ["train.jsonl"]


def test_the_teacher_scores_every_text_of_every_row_with_the_chosen_reranker(tmp_path: Path) -> None:
    reranker = tmp_path / "reranker"
    build_reranker.build(TINY_MODEL, reranker, seed=0)
    train = write_lines(tmp_path / "train.jsonl", ROWS)
    params = write_params(tmp_path / "params.yaml", {"finetune.distill": True, "rerank.model": "base",
                                                     "reranker.max_length": 64, "reranker.query_max_len": 16})
    result = stage("teacher", reranker, tmp_path / "not-trained", train, tmp_path / "teacher", "--params", params)
    assert result.returncode == 0, result.stderr[-2000:]
    scored = [json.loads(line) for line in (tmp_path / "teacher" / "train.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in row.items() if not k.endswith("_scores")} for row in scored] == ROWS
    first = scored[0]
    expected = cross_encoder_scores(reranker, [(first["query"], t) for t in first["pos"] + first["neg"]], 64, 16, 8)
    assert first["pos_scores"] + first["neg_scores"] == pytest.approx(expected, abs=1e-5)
    assert all(len(r["pos_scores"]) == 1 and len(r["neg_scores"]) == 3 for r in scored)
    record = json.loads((tmp_path / "teacher" / "teacher.json").read_text())
    assert record["reranker"] == str(reranker) and record["pairs"] == 16 and 0 <= record["positive_ranked_first"] <= 1

    not_a_reranker = write_params(tmp_path / "other.yaml", {"finetune.distill": True})
    result = stage("teacher", reranker, TINY_MODEL, train, tmp_path / "other", "--params", not_a_reranker)
    assert result.returncode == 2 and "not a cross-encoder" in result.stderr and not (tmp_path / "other").exists()


def test_the_distill_switch_reaches_the_trainer_and_needs_scores(tmp_path: Path) -> None:
    unscored = write_lines(tmp_path / "train.jsonl", ROWS)
    off = load_params(write_params(tmp_path / "off.yaml", {}))
    on = load_params(write_params(tmp_path / "on.yaml", {"finetune.distill": True}))
    for params, expected in ((off, False), (on, True)):
        _, data_args, _ = flag_arguments(TINY_MODEL, unscored, tmp_path / "out", params.embedding, params.finetune,
                                         1, 4)
        assert data_args.knowledge_distillation is expected

    overrides = {"finetune.distill": True, "finetune.batch_size": 2, "finetune.train_group_size": 4,
                 "embedding.passage_max_len": 32, "long_documents.overlap": 8, "embedding.query_max_len": 16,
                 "finetune.logging_steps": 1}
    params = write_params(tmp_path / "params.yaml", overrides)
    result = stage("finetune", TINY_MODEL, unscored, tmp_path / "model", "--params", params)
    assert result.returncode == 2 and not (tmp_path / "model").exists()
    assert f"{unscored}:1: `pos_scores` must hold one number for each text of `pos`" in result.stderr

    scored = write_lines(tmp_path / "scored.jsonl", [r | {"pos_scores": [5.0], "neg_scores": [1.0, 0.0, -1.0]}
                                                     for r in ROWS])
    result = stage("finetune", TINY_MODEL, scored, tmp_path / "model", "--params", params)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "model" / "data_args.json").read_text())["knowledge_distillation"] is True
    assert "distilling the teacher scores" in result.stderr
