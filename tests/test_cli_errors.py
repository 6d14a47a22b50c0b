"""Each stage, run as DVC runs it, stops on bad input with one clear line, exit code 2 and no output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, TINY_MODEL, write_lines

PARAMS = ROOT / "params.yaml"


def run_module(module: str, *args: str | Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=300)


def test_prepare_on_a_malformed_line(dataset_dir: Path, tmp_path: Path) -> None:
    lines = (dataset_dir / "train.jsonl").read_text(encoding="utf-8").splitlines()
    write_lines(dataset_dir / "train.jsonl", [lines[0], '{"query_id": "q2", "query": '])
    out = tmp_path / "prepared"
    result = run_module("zh_retrieval.prepare", dataset_dir, out, "--params", PARAMS, "--stats", tmp_path / "s.json")
    assert result.returncode == 2
    assert f"{dataset_dir / 'train.jsonl'}:2: not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and not (tmp_path / "s.json").exists()


def test_prepare_on_a_missing_dataset(tmp_path: Path) -> None:
    result = run_module("zh_retrieval.prepare", tmp_path / "nope", tmp_path / "out", "--params", PARAMS)
    assert result.returncode == 2 and "nope: dataset directory not found" in result.stderr


def test_embed_and_evaluate_with_a_directory_that_is_not_a_model(dataset_dir: Path, tmp_path: Path) -> None:
    not_a_model = tmp_path / "empty-model"
    not_a_model.mkdir()
    embeddings = tmp_path / "embeddings"
    result = run_module("zh_retrieval.embed", not_a_model, dataset_dir, embeddings, "--params", PARAMS)
    assert result.returncode == 2
    assert f"{not_a_model}: not a model directory: no config.json" in result.stderr
    assert not embeddings.exists()

    prepared = tmp_path / "prepared"
    assert run_module("zh_retrieval.prepare", dataset_dir, prepared, "--params", PARAMS).returncode == 0
    assert run_module("zh_retrieval.embed", TINY_MODEL, dataset_dir, embeddings, "--params", PARAMS).returncode == 0
    out, metrics = tmp_path / "eval", tmp_path / "metrics.json"
    result = run_module("zh_retrieval.evaluate", not_a_model, embeddings, prepared, out, metrics, "--params", PARAMS)
    assert result.returncode == 2
    assert f"{not_a_model}: not a model directory: no config.json" in result.stderr
    assert not out.exists() and not metrics.exists()


def test_evaluate_without_embeddings(dataset_dir: Path, tmp_path: Path) -> None:
    prepared = tmp_path / "prepared"
    assert run_module("zh_retrieval.prepare", dataset_dir, prepared, "--params", PARAMS).returncode == 0
    result = run_module("zh_retrieval.evaluate", TINY_MODEL, tmp_path / "nothing", prepared, tmp_path / "eval",
                        tmp_path / "m.json", "--params", PARAMS)
    assert result.returncode == 2 and "corpus.npy: file not found (run the embed stage first)" in result.stderr


def test_finetune_with_a_model_without_weights(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text((TINY_MODEL / "config.json").read_text())
    result = run_module("zh_retrieval.finetune", model, tmp_path / "train.jsonl", tmp_path / "out", "--params", PARAMS)
    assert result.returncode == 2 and "no safetensors weights" in result.stderr
    assert not (tmp_path / "out").exists()


def test_finetune_with_a_query_without_negatives(tmp_path: Path) -> None:
    train = write_lines(tmp_path / "train.jsonl", [{"query": "问", "pos": ["答"], "neg": ["别的"]},
                                                   {"query": "问", "pos": ["答"], "neg": []}])
    result = run_module("zh_retrieval.finetune", TINY_MODEL, train, tmp_path / "out", "--params", PARAMS)
    assert result.returncode == 2 and f"{train}:2: `pos` and `neg` must each hold at least one text" in result.stderr


def test_mine_with_more_negatives_than_the_corpus_holds(dataset_dir: Path, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS.read_text(encoding="utf-8").replace("train_group_size: 8", "train_group_size: 9"))
    prepared = tmp_path / "prepared"
    assert run_module("zh_retrieval.prepare", dataset_dir, prepared, "--params", params).returncode == 0
    result = run_module("zh_retrieval.mine", TINY_MODEL, tmp_path / "no-embeddings", dataset_dir,
                        prepared / "train_queries.jsonl", tmp_path / "mined", "--params", params)
    assert result.returncode == 2
    assert "8 negatives per query" in result.stderr and "only 5 documents" in result.stderr
    assert str(params) in result.stderr and not (tmp_path / "mined").exists()
