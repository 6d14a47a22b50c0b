from __future__ import annotations

import json
from pathlib import Path

import pytest

from zh_retrieval.errors import InputError
from zh_retrieval.params import (
    embedding_params,
    encode_params,
    evaluate_params,
    finetune_params,
    mine_params,
    prepare_params,
)

ROOT = Path(__file__).resolve().parents[1]


def params_with(tmp_path: Path, old: str, new: str) -> Path:
    text = (ROOT / "params.yaml").read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "params.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def test_project_params_are_valid() -> None:
    path = ROOT / "params.yaml"
    finetune = finetune_params(path)
    assert finetune.lr > 0
    assert mine_params(path).negatives_per_query == finetune.train_group_size - 1
    assert embedding_params(path).pooling in ("cls", "mean")
    assert 10 in evaluate_params(path).k


def test_lr_as_dvc_writes_it_is_a_number(tmp_path: Path) -> None:
    # `dvc exp run -S lr=2e-5` writes `lr: 2e-05`, which YAML 1.1 readers return as a string.
    path = params_with(tmp_path, "lr: 1.0e-4", "lr: 2e-05")
    assert finetune_params(path).lr == 2e-5


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("lr: 1.0e-4", "lr: -1.0e-4", "`lr` is -0.0001"),
        ("lr: 1.0e-4", "lr: fast", "`lr` is 'fast'; expected a number"),
        ("pooling: mean", "pooling: max", "`embedding.pooling` is 'max'; expected one of cls, mean"),
        ("train_group_size: 8", "train_group_size: 1", "`finetune.train_group_size` is 1"),
        ("precision: fp32        # fp16", "precision: int8 # fp16", "`finetune.precision` is 'int8'"),
        ("hard_ratio: 0.7", "hard_ratio: 1.5", "`mine.hard_ratio` is 1.5; expected a number >= 0.0 and <= 1.0"),
        ("hard_rank_max: 20", "hard_rank_max: 1", "`mine.hard_rank_max` is 1; expected an integer >= 2"),
        ("k: [1, 5, 10, 100]", "k: [0]", "`evaluate.k` is [0]"),
        ("positive: bm25_passage", "positive: middle", "`mine.positive` is 'middle'; expected one of best_passage"),
        ("guard: best_passage", "guard: first_passage", "`mine.guard` is 'first_passage'; expected one of"),
        ("dataset_negative_share: 0.0", "dataset_negative_share: 2", "`mine.dataset_negative_share` is 2"),
        ("maxp: true", "maxp: false", "is a passage, which needs the passage embeddings embed makes with "
                                       "`long_documents.maxp: true`"),
        ("dataset_negative_share: 0.0", "use_dataset_negatives: true",
         "`mine.use_dataset_negatives` was replaced by `mine.dataset_negative_share`"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = params_with(tmp_path, old, new)
    with pytest.raises(InputError) as caught:
        for read in (embedding_params, finetune_params, evaluate_params, prepare_params, mine_params, encode_params):
            read(path)
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_missing_parameter(tmp_path: Path) -> None:
    path = params_with(tmp_path, "  temperature: 0.02\n", "")
    with pytest.raises(InputError, match="missing parameter `finetune.temperature`"):
        finetune_params(path)


def test_real_experiment_preset_is_valid_and_differs_only_where_it_should() -> None:
    preset = ROOT / "presets" / "mldr-zh-bge-base.yaml"
    for read in (embedding_params, finetune_params, evaluate_params, prepare_params, mine_params, encode_params):
        read(preset)
    assert embedding_params(preset).pooling == "cls" and finetune_params(preset).lr == 1e-5
    from zh_retrieval.params import load_params

    demo, real = load_params(ROOT / "params.yaml"), load_params(preset)
    assert demo.keys() == real.keys(), "the preset has every section the pipeline reads"
    for section in demo:
        if isinstance(demo[section], dict):
            assert demo[section].keys() == real[section].keys(), section


def test_deepspeed_config_must_be_a_tracked_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # stages run from the repository root; the path is relative to it
    path = params_with(tmp_path, "deepspeed: null", "deepspeed: configs/deepspeed_zero1.json")
    assert finetune_params(path).deepspeed == "configs/deepspeed_zero1.json"
    outside = tmp_path / "ds.json"
    outside.write_text("{}")
    for value, problem in [(str(outside), "a file under configs/"), ("../configs/deepspeed_zero1.json",
                                                                     "a file under configs/"),
                           ("configs/missing.json", "an existing DeepSpeed config file")]:
        with pytest.raises(InputError, match=problem):
            finetune_params(params_with(tmp_path, "deepspeed: null", f"deepspeed: {value}"))


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("deepspeed_*.json")), ids=lambda p: p.name)
def test_deepspeed_configs_leave_optimizer_and_schedule_to_the_trainer(config: Path) -> None:
    """With its own optimizer and scheduler sections, DeepSpeed would train another recipe than a plain run:
    WarmupDecayLR's default log-shaped warmup, and weight decay on biases and LayerNorm weights."""
    settings = json.loads(config.read_text(encoding="utf-8"))
    assert "optimizer" not in settings and "scheduler" not in settings
    assert settings["zero_optimization"]["stage"] in (0, 1)
