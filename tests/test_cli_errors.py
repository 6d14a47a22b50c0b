"""Each stage, run as DVC runs it, stops on bad input with one clear line, exit code 2 and no output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, TINY_MODEL, write_lines, write_params

PARAMS = ROOT / "params.yaml"


def run_stage(stage: str, *args: str | Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", f"zh_retrieval.stages.{stage}", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300)


def test_prepare_on_a_malformed_line(dataset_dir: Path, tmp_path: Path) -> None:
    lines = (dataset_dir / "train.jsonl").read_text(encoding="utf-8").splitlines()
    write_lines(dataset_dir / "train.jsonl", [lines[0], '{"query_id": "q2", "query": '])
    out = tmp_path / "prepared"
    result = run_stage("prepare", dataset_dir, out, "--params", PARAMS, "--stats", tmp_path / "s.json")
    assert result.returncode == 2
    assert f"{dataset_dir / 'train.jsonl'}:2: not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and not (tmp_path / "s.json").exists()


def test_prepare_on_a_missing_dataset(tmp_path: Path) -> None:
    result = run_stage("prepare", tmp_path / "nope", tmp_path / "out", "--params", PARAMS)
    assert result.returncode == 2 and "nope: dataset directory not found" in result.stderr


def test_embed_and_evaluate_with_a_directory_that_is_not_a_model(dataset_dir: Path, tmp_path: Path) -> None:
    not_a_model = tmp_path / "empty-model"
    not_a_model.mkdir()
    embeddings = tmp_path / "embeddings"
    result = run_stage("embed", not_a_model, dataset_dir, embeddings, "--params", PARAMS)
    assert result.returncode == 2
    assert f"{not_a_model}: not a model directory: no config.json" in result.stderr
    assert not embeddings.exists()

    prepared = tmp_path / "prepared"
    assert run_stage("prepare", dataset_dir, prepared, "--params", PARAMS).returncode == 0
    assert run_stage("embed", TINY_MODEL, dataset_dir, embeddings, "--params", PARAMS).returncode == 0
    out, metrics = tmp_path / "eval", tmp_path / "metrics.json"
    result = run_stage("evaluate", not_a_model, embeddings, prepared, out, metrics, "--params", PARAMS)
    assert result.returncode == 2
    assert f"{not_a_model}: not a model directory: no config.json" in result.stderr
    assert not out.exists() and not metrics.exists()


def test_evaluate_without_embeddings(dataset_dir: Path, tmp_path: Path) -> None:
    prepared = tmp_path / "prepared"
    assert run_stage("prepare", dataset_dir, prepared, "--params", PARAMS).returncode == 0
    result = run_stage("evaluate", TINY_MODEL, tmp_path / "nothing", prepared, tmp_path / "eval",
                        tmp_path / "m.json", "--params", PARAMS)
    assert result.returncode == 2 and "corpus.npy: file not found (run the embed stage first)" in result.stderr


def test_finetune_with_a_model_without_weights(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text((TINY_MODEL / "config.json").read_text())
    result = run_stage("finetune", model, tmp_path / "train.jsonl", tmp_path / "out", "--params", PARAMS)
    assert result.returncode == 2 and "no safetensors weights" in result.stderr
    assert not (tmp_path / "out").exists()


def test_finetune_with_a_query_without_negatives(tmp_path: Path) -> None:
    train = write_lines(tmp_path / "train.jsonl", [{"query": "问", "pos": ["答"], "neg": ["别的"]},
                                                   {"query": "问", "pos": ["答"], "neg": []}])
    result = run_stage("finetune", TINY_MODEL, train, tmp_path / "out", "--params", PARAMS)
    assert result.returncode == 2 and f"{train}:2: `pos` and `neg` must each hold at least one text" in result.stderr


def test_mine_with_more_negatives_than_the_corpus_holds(dataset_dir: Path, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS.read_text(encoding="utf-8").replace("train_group_size: 8", "train_group_size: 9"))
    prepared = tmp_path / "prepared"
    assert run_stage("prepare", dataset_dir, prepared, "--params", params).returncode == 0
    result = run_stage("mine", TINY_MODEL, tmp_path / "no-embeddings", dataset_dir,
                        prepared / "train_queries.jsonl", tmp_path / "mined", "--params", params)
    assert result.returncode == 2
    assert "8 negatives per query" in result.stderr and "only 5 documents" in result.stderr
    assert str(params) in result.stderr and not (tmp_path / "mined").exists()


def test_prepare_check_prints_the_counts_and_writes_nothing(dataset_dir: Path) -> None:
    before = sorted(p.name for p in dataset_dir.iterdir())
    result = run_stage("prepare", "--check", dataset_dir)
    assert result.returncode == 0, result.stderr
    counts = dict(line.split() for line in result.stdout.splitlines()[1:] if not line.strip().startswith("("))
    assert counts == {"corpus_documents": "6", "corpus_mean_characters": "8", "train_queries": "3",
                      "train_dataset_negatives": "1", "dev_queries": "1", "dev_relevant_documents": "1",
                      "test_queries": "2", "test_relevant_documents": "3"}
    assert sorted(p.name for p in dataset_dir.iterdir()) == before

    (dataset_dir / "dev.jsonl").unlink()  # optional
    result = run_stage("prepare", "--check", dataset_dir)
    assert result.returncode == 0 and "dev_queries" not in result.stdout and "no dev.jsonl" in result.stdout


def test_prepare_check_names_the_first_problem(dataset_dir: Path) -> None:
    lines = (dataset_dir / "test.jsonl").read_text(encoding="utf-8").splitlines()
    write_lines(dataset_dir / "test.jsonl", [lines[0], lines[1].replace('"d6"', '"d99"')])
    result = run_stage("prepare", "--check", dataset_dir)
    assert result.returncode == 2
    assert f"{dataset_dir / 'test.jsonl'}:2: positive_passages docid 'd99' is not in the corpus" in result.stderr


def test_check_params_names_the_key_and_writes_nothing(tmp_path: Path) -> None:
    text = PARAMS.read_text(encoding="utf-8")
    for old, new, message in [("lr: 1.0e-4", "lr: abc", "`lr` is 'abc'; expected a number"),
                              ("dataset: data/sample", "dataset: data/missing", "`dataset`: data/missing: dataset "
                                                                                "directory not found"),
                              ("base_model: models/zh-mini-embedder", "base_model: data/sample",
                               "`base_model`: data/sample: not a model directory: no config.json"),
                              ("dataset: data/general", "dataset: data/nowhere", "`general.dataset`: data/nowhere: "
                                                                                 "dataset directory not found"),
                              ("finetuned_weight: 0.5", "finetuned_weight: 1.5", "`merge.finetuned_weight` is 1.5")]:
        assert old in text
        params, out = tmp_path / "params.yaml", tmp_path / "checked.txt"
        params.write_text(text.replace(old, new, 1), encoding="utf-8")
        result = subprocess.run([sys.executable, "-m", "zh_retrieval.stages.check_params", params, out],
                                capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert not out.exists()
    good = subprocess.run([sys.executable, "-m", "zh_retrieval.stages.check_params", PARAMS, out], cwd=ROOT, timeout=60)
    assert good.returncode == 0 and out.read_text() == "params valid\n"


def test_gpu_smoke_test_stops_clearly_without_a_gpu() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts/gpu_smoke.py")], capture_output=True, text=True,
                            env=dict(os.environ, CUDA_VISIBLE_DEVICES=""), timeout=120)
    assert result.returncode == 2
    assert "gpu_smoke: no CUDA device visible to torch" in result.stderr and "Traceback" not in result.stderr


def test_mine_stops_when_the_guard_leaves_queries_without_hard_negatives(dataset_dir: Path, tmp_path: Path) -> None:
    params = write_params(tmp_path / "params.yaml", {"finetune.train_group_size": 4, "mine.false_negative_margin": 1.0,
                                                     "mine.max_share_without_hard": 0.0})
    prepared, embeddings, mined = tmp_path / "prepared", tmp_path / "embeddings", tmp_path / "mined"
    assert run_stage("prepare", dataset_dir, prepared, "--params", params).returncode == 0
    assert run_stage("embed", TINY_MODEL, dataset_dir, embeddings, "--params", params).returncode == 0
    result = run_stage("mine", TINY_MODEL, embeddings, dataset_dir, prepared / "train_queries.jsonl",
                        mined, "--params", params, "--stats", tmp_path / "mine.json")
    assert result.returncode == 2, result.stderr
    assert f"{params}: 3 of 3 training queries (100%) got no hard negative" in result.stderr
    assert "Traceback" not in result.stderr
    assert not mined.exists() and not (tmp_path / "mine.json").exists()
