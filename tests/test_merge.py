"""The forgetting check's pieces: merging with the base model, the general set, the packaged model card."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import CORPUS, ROOT, TINY_MODEL, query_row, write_lines
from ruamel.yaml import YAML
from safetensors.torch import load_file, save_file

from zh_retrieval.core.errors import InputError
from zh_retrieval.core.params import EmbeddingParams, EncodeParams, EvaluateParams, read_yaml
from zh_retrieval.data.mldr import load_corpus, load_queries
from zh_retrieval.reporting.card import front_matter, package
from zh_retrieval.stages.evaluate_general import evaluate_general
from zh_retrieval.training.merge import merge_models

EMBEDDING = EmbeddingParams(pooling="mean", query_instruction="查询：", query_max_len=32, passage_max_len=64)
ENCODING = EncodeParams(batch_size=4, precision="fp32")


@pytest.fixture
def finetuned(tmp_path: Path) -> Path:
    """The tiny model with every weight moved, and the extra files a fine-tuned directory carries."""
    model = tmp_path / "finetuned"
    shutil.copytree(TINY_MODEL, model)
    weights = load_file(TINY_MODEL / "model.safetensors")
    save_file({k: v + 0.5 if v.is_floating_point() else v for k, v in weights.items()}, model / "model.safetensors")
    (model / "modules.json").write_text('[{"idx": 0, "name": "0", "path": "", "type": "x"}]', encoding="utf-8")
    (model / "1_Pooling").mkdir()
    (model / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}', encoding="utf-8")
    return model


@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0])
def test_merged_weights_are_the_weighted_average(finetuned: Path, tmp_path: Path, weight: float) -> None:
    out = merge_models(TINY_MODEL, finetuned, tmp_path / "merged", weight, seed=0)
    merged, base, tuned = (load_file(d / "model.safetensors") for d in (out, TINY_MODEL, finetuned))
    for key, value in base.items():
        if value.is_floating_point():
            torch.testing.assert_close(merged[key], weight * tuned[key] + (1 - weight) * value)
    # Everything else comes from the fine-tuned directory, which loads the same way.
    assert (out / "1_Pooling" / "config.json").read_text() == (finetuned / "1_Pooling" / "config.json").read_text()
    assert (out / "tokenizer.json").read_bytes() == (finetuned / "tokenizer.json").read_bytes()
    assert json.loads((out / "merge.json").read_text())["finetuned_weight"] == weight


def test_merge_is_byte_identical_across_runs_and_refuses_unlike_models(finetuned: Path, tmp_path: Path) -> None:
    first = merge_models(TINY_MODEL, finetuned, tmp_path / "a", 0.5, seed=3)
    second = merge_models(TINY_MODEL, finetuned, tmp_path / "b", 0.5, seed=3)
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()

    config = json.loads((finetuned / "config.json").read_text())
    (finetuned / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 7}))
    with pytest.raises(InputError, match=r"differ in num_hidden_layers"):
        merge_models(TINY_MODEL, finetuned, tmp_path / "c", 0.5, seed=3)
    assert not (tmp_path / "c").exists()
    with pytest.raises(InputError, match="not-a-model"):
        merge_models(tmp_path / "not-a-model", finetuned, tmp_path / "d", 0.5, seed=3)


def test_general_evaluation_scores_a_model_on_another_dataset(tmp_path: Path) -> None:
    general = tmp_path / "general"
    general.mkdir()
    write_lines(general / "corpus.jsonl", [{"docid": d, "text": t} for d, t in CORPUS.items()])
    write_lines(general / "test.jsonl", [query_row("g1", "列出目录", ["d1"]), query_row("g2", "删除文件", ["d3"])])
    write_lines(general / "dev.jsonl", [query_row("g3", "复制文件", ["d2"])])
    params = EvaluateParams(k=(1, 5), use_query_instruction=True)
    metrics = evaluate_general(TINY_MODEL, general, tmp_path / "out", EMBEDDING, ENCODING, params)
    assert metrics["test"]["num_queries"] == 2 and metrics["test"]["num_corpus"] == 6
    assert metrics["test"]["recall_at_5"] >= 0.5 and metrics["dev"]["num_queries"] == 1
    assert len((tmp_path / "out" / "test" / "run.trec").read_text().splitlines()) == 2 * 5
    assert len((tmp_path / "out" / "dev" / "run.trec").read_text().splitlines()) == 5


def test_bundled_general_set_is_disjoint_from_the_domain_and_the_base_models_training() -> None:
    general, sample = ROOT / "data" / "general", ROOT / "data" / "sample"
    corpus = load_corpus(general)
    queries, dev = load_queries(general, "test", corpus), load_queries(general, "dev", corpus)
    assert len(corpus) >= 400 and len(queries) == len(dev) == 200
    assert not {q.query_id for q in queries} & {q.query_id for q in dev}, "dev and test share no query"
    assert "libreoffice-help-zh-cn" in (general / "LICENSE").read_text(encoding="utf-8")
    # No 20-character run of Chinese text is shared with the domain sample.
    cjk_runs = re.compile(r"[\u4e00-\u9fff]{20}")
    domain = "\n".join(load_corpus(sample).values())
    shared = [run for text in list(corpus.values())[:200] for run in cjk_runs.findall(text) if run in domain]
    assert not shared, shared[:3]
    # The demo base model was pretrained on other packages, which its card names.
    card = (ROOT / "models" / "zh-mini-embedder" / "README.md").read_text(encoding="utf-8")
    assert "debian-reference-zh-cn" in card and "libreoffice" not in card.lower()


def test_package_copies_the_model_with_a_card_the_hub_reads(finetuned: Path, tmp_path: Path) -> None:
    metrics = tmp_path / "metrics"
    for split, shift in (("test", 0.0), ("dev", 0.1)):  # the card reports test, the split no choice read
        (metrics / split).mkdir(parents=True)
        for stem, ndcg in (("base", 0.2), ("finetuned", 0.3), ("general_base", 0.4), ("general_finetuned", 0.35)):
            (metrics / split / f"{stem}.json").write_text(json.dumps({
                "ndcg_at_10": ndcg + shift, "recall_at_10": 0.5, "num_queries": 9, "num_corpus": 99}))
    (metrics / "mine.json").write_text(json.dumps({"hard_negatives": 35, "random_negatives": 14, "queries": 7,
                                                   "dataset_negatives": 0, "queries_without_hard": 0}))
    out = package(finetuned, tmp_path / "release", "finetuned", read_yaml(ROOT / "params.yaml"), metrics)
    card = (out / "README.md").read_text(encoding="utf-8")
    meta = front_matter(out / "README.md")
    assert meta["base_model"] == "models/zh-mini-embedder" and meta["license"] == "gpl-3.0-or-later"
    assert meta["library_name"] == "sentence-transformers" and "sentence-similarity" in meta["tags"]
    assert meta["datasets"] == ["data/sample"] and meta["language"] == ["zh"]
    assert YAML(typ="safe", pure=True).load(card.split("---")[1]) == meta
    assert "| this model (finetuned) | 0.3000 | 0.5000 | – | 0.3500 |" in card
    assert "35 hard, 14 random" in card and "query_instruction_for_retrieval=" in card
    assert (out / "model.safetensors").read_bytes() == (finetuned / "model.safetensors").read_bytes()
    assert not (finetuned / "README.md").exists(), "the evaluated directory is left as it was"
    (metrics / "test" / "general_finetuned.json").unlink()
    with pytest.raises(InputError, match="general_finetuned.json: file not found"):
        package(finetuned, tmp_path / "release2", "finetuned", read_yaml(ROOT / "params.yaml"), metrics)
