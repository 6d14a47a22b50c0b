"""No model's own code ever runs: a model directory whose config names its own modelling code (`auto_map`).

The fault: a base model (or a fine-tuned model swapped for one) that carries a Python file and an
`auto_map` entry pointing at it; transformers would import that file under trust_remote_code=True,
which LM-Cocktail's loader hard-codes. Here the file writes a marker when imported.
Checked: every stage that loads a model stops with one line naming the file and `auto_map`, exit 2,
no output; the loaders themselves, reached past that check, load the built-in BERT class without
importing the file; `merge` never calls LM-Cocktail's loader. The marker never appears.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TINY_MODEL, write_params

from zh_retrieval.core.errors import InputError
from zh_retrieval.core.files import check_model_dir
from zh_retrieval.retrieval.encode import load_embedder

MARKER_CODE = """
import pathlib
pathlib.Path({marker!r}).write_text("the model's own code ran")
from transformers import BertModel, BertConfig


class OwnConfig(BertConfig):
    model_type = "bert"


class OwnModel(BertModel):
    config_class = OwnConfig
"""


@pytest.fixture
def model_with_code(tmp_path: Path) -> tuple[Path, Path]:
    """(a copy of the tiny model whose config.json maps AutoModel to its own file, the marker that file writes)."""
    model, marker = tmp_path / "model-with-code", tmp_path / "MARKER"
    shutil.copytree(TINY_MODEL, model)
    (model / "own_modeling.py").write_text(MARKER_CODE.format(marker=str(marker)), encoding="utf-8")
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    config["auto_map"] = {"AutoConfig": "own_modeling.OwnConfig", "AutoModel": "own_modeling.OwnModel"}
    (model / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return model, marker


def stage(name: str, *args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"zh_retrieval.stages.{name}", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=cwd,
                          env=dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"))


def test_check_model_dir_names_the_file_and_its_code(model_with_code: tuple[Path, Path]) -> None:
    model, marker = model_with_code
    with pytest.raises(InputError) as raised:
        check_model_dir(model)
    message = str(raised.value)
    assert message.startswith(f"{model / 'config.json'}: the model carries its own code")
    assert "AutoModel -> own_modeling.OwnModel" in message and "own_modeling.py" in message
    assert not marker.exists()


def test_every_stage_that_loads_a_model_refuses_it(model_with_code: tuple[Path, Path], dataset_dir: Path,
                                                   tmp_path: Path) -> None:
    model, marker = model_with_code
    params = write_params(tmp_path / "params.yaml", {"base_model": str(model), "dataset": str(dataset_dir),
                                                     "general.dataset": str(dataset_dir),
                                                     "finetune.train_group_size": 2})
    prepared, embeddings = tmp_path / "prepared", tmp_path / "embeddings"
    assert stage("prepare", dataset_dir, prepared, "--params", params).returncode == 0
    assert stage("embed", TINY_MODEL, dataset_dir, embeddings, "--params", params).returncode == 0
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"query": "问", "pos": ["答"], "neg": ["别的"]}, ensure_ascii=False) + "\n")
    out = tmp_path / "out"
    commands = {
        "check_params": (params, out / "checked.txt"),
        "embed": (model, dataset_dir, out / "embeddings", "--params", params),
        "mine": (model, embeddings, dataset_dir, prepared / "train_queries.jsonl", out / "mined", "--params", params),
        "finetune": (model, train, out / "finetuned", "--params", params),
        "merge": (model, TINY_MODEL, out / "merged", "--params", params),
        "merge ": (TINY_MODEL, model, out / "merged", "--params", params),  # the fine-tuned side carries it
        "evaluate": (model, embeddings, prepared, out / "eval", out / "metrics", "--params", params),
        "evaluate_general": (model, dataset_dir, out / "general", out / "metrics", "--name", "g", "--params", params),
        "package": (model, out / "release", "--name", "finetuned", "--params", params, "--metrics", out / "metrics"),
        "finetune_reranker": (model, train, out / "reranker", "--params", params),
        "rerank": (model, tmp_path / "eval", TINY_MODEL, embeddings, dataset_dir, prepared, out / "reranked",
                   out / "metrics", "--name", "reranked", "--params", params),
        "teacher": (model, model, train, out / "teacher", "--params",
                    write_params(tmp_path / "distill.yaml", {"finetune.distill": True, "rerank.model": "base"})),
        "reranker_groups": (model, embeddings, dataset_dir, prepared / "train_queries.jsonl", train, out / "groups",
                            "--params", write_params(tmp_path / "bm25.yaml", {"reranker.negatives": "bm25"})),
    }
    for name, args in commands.items():
        result = stage(name.strip(), *args)
        assert result.returncode == 2, f"{name}: {result.stderr[-2000:]}"
        assert "the model carries its own code (`auto_map`" in result.stderr, f"{name}: {result.stderr[-2000:]}"
        assert "Traceback" not in result.stderr, name
        assert not out.exists() or not any(out.iterdir()), f"{name} wrote {sorted(out.iterdir())}"
    assert not marker.exists()


def test_prepare_refuses_it_as_the_tokenizer(model_with_code: tuple[Path, Path], dataset_dir: Path,
                                             tmp_path: Path) -> None:
    """prepare loads the base model's tokenizer to place evidence; the sample's queries record it."""
    model, marker = model_with_code
    sample = ROOT / "data" / "sample"
    result = stage("prepare", sample, tmp_path / "prepared", "--params", ROOT / "params.yaml", "--tokenizer", model)
    assert result.returncode == 2 and "the model carries its own code" in result.stderr
    assert not (tmp_path / "prepared").exists() and not marker.exists()


def test_the_loaders_past_the_check_still_never_import_it(model_with_code: tuple[Path, Path],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth: were the check skipped, trust_remote_code=False loads transformers' own BERT."""
    from zh_retrieval.training import merge

    model, marker = model_with_code
    monkeypatch.setattr("zh_retrieval.retrieval.encode.check_model_dir", lambda _: None)
    monkeypatch.setattr(merge, "check_no_own_code", lambda _: None)
    embedder = load_embedder(model, "mean")
    assert type(embedder.model).__name__ == "BertModel"
    assert type(merge.load_encoder(model)).__name__ == "BertModel"
    assert not marker.exists()


def test_merge_averages_without_lm_cocktails_loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """merge_param is LM-Cocktail's; its load_model (trust_remote_code=True) must never be reached."""
    import LM_Cocktail.cocktail
    import LM_Cocktail.utils

    from zh_retrieval.training.merge import merge_models

    def refuse(*args, **kwargs):
        raise AssertionError("LM-Cocktail's loader was called")

    monkeypatch.setattr(LM_Cocktail.utils, "load_model", refuse)
    monkeypatch.setattr(LM_Cocktail.cocktail, "load_model", refuse)
    other = tmp_path / "other"
    shutil.copytree(TINY_MODEL, other)
    from safetensors.torch import load_file, save_file

    weights = load_file(other / "model.safetensors")
    save_file({k: v + 1.0 if v.is_floating_point() else v for k, v in weights.items()}, other / "model.safetensors",
              metadata={"format": "pt"})
    merged = merge_models(TINY_MODEL, other, tmp_path / "merged", 0.25, seed=0)
    result = load_file(merged / "model.safetensors")
    averaged = [key for key, value in weights.items() if value.is_floating_point() and key in result]
    assert len(averaged) > 10
    for key in averaged:
        torch.testing.assert_close(result[key], weights[key] + 0.25)


def test_the_averaging_is_the_same_as_lm_cocktails_mix_models(tmp_path: Path) -> None:
    """Loaded without remote code, the merged weights equal LM-Cocktail's `mix_models` bit for bit (same seed)."""
    from LM_Cocktail import mix_models

    from zh_retrieval.training.merge import average_models

    base = ROOT / "models" / "zh-mini-embedder"  # saved without a pooler: the load draws it from the RNG
    other = tmp_path / "other"
    shutil.copytree(base, other)
    from safetensors.torch import load_file, save_file

    weights = load_file(other / "model.safetensors")
    save_file({k: v * 0.5 if v.is_floating_point() else v for k, v in weights.items()}, other / "model.safetensors",
              metadata={"format": "pt"})
    torch.manual_seed(7)
    ours = average_models([other, base], [0.3, 0.7]).state_dict()
    torch.manual_seed(7)
    theirs = mix_models([str(other), str(base)], model_type="encoder", weights=[0.3, 0.7]).state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
