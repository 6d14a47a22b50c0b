from __future__ import annotations

import json
from pathlib import Path

import pytest

from zh_retrieval.core.errors import InputError
from zh_retrieval.core.params import load_params, read_yaml
from zh_retrieval.preset import apply_preset, dotted

ROOT = Path(__file__).resolve().parents[1]


def params_with(tmp_path: Path, old: str, new: str) -> Path:
    text = (ROOT / "params.yaml").read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "params.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def test_project_params_are_valid() -> None:
    params = load_params(ROOT / "params.yaml")
    assert params.finetune.lr > 0
    assert params.mine.negatives_per_query == params.finetune.train_group_size - 1
    assert params.embedding.pooling in ("cls", "mean")
    assert 10 in params.evaluate.k


def test_lr_as_dvc_writes_it_is_a_number(tmp_path: Path) -> None:
    # `dvc exp run -S lr=2e-5` writes `lr: 2e-05`, which YAML 1.1 readers return as a string.
    path = params_with(tmp_path, "lr: 1.0e-4", "lr: 2e-05")
    assert load_params(path).finetune.lr == 2e-5


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
        ("positive: bm25_passage", "positive: middle",
         "`mine.positive` is 'middle'; expected one of truncated, best_passage"),
        ("guard: best_passage", "guard: first_passage", "`mine.guard` is 'first_passage'; expected one of"),
        # The words an older params.yaml used for the truncated document name their replacement.
        ("positive: bm25_passage", "positive: first_passage", "`mine.positive: first_passage` is now called "
                                                               "`truncated` (set mine.positive: truncated)"),
        ("guard: best_passage", "guard: document", "`mine.guard: document` is now called `truncated`"),
        ("negative_text: best_passage", "negative_text: document", "`mine.negative_text: document` is now called "
                                                                    "`truncated`"),
        ("dataset_negative_share: 0.0", "dataset_negative_share: 2", "`mine.dataset_negative_share` is 2"),
        ("maxp: true", "maxp: false", "is a passage, which needs the passage embeddings embed makes with "
                                       "`long_documents.maxp: true`"),
        ("dataset_negative_share: 0.0", "use_dataset_negatives: true",
         "`mine.use_dataset_negatives` was replaced by `mine.dataset_negative_share`"),
        # The recipe is set per run, not per device: the old per-device keys name their replacements.
        ("batch_size: 8 ", "per_device_batch_size: 8 ",
         "`finetune.per_device_batch_size` was replaced by `finetune.batch_size`"),
        ("checkpoint_every: null", "checkpoint_steps: 500",
         "`finetune.checkpoint_steps` was replaced by `finetune.checkpoint_every`"),
        ("checkpoint_every: null", "checkpoint_every: 1.5", "`finetune.checkpoint_every` is 1.5"),
        ("dev_from_train: 200", "eval_split: test", "`prepare.eval_split` was replaced by `prepare.dev_from_train`"),
        ("guard_reference: positive_document", "guard_reference: other", "`mine.guard_reference` is 'other'"),
        ("dense_weights: [0.0,", "dense_weights: [1.5,", "`hybrid.dense_weights` is [1.5,"),
        ("rrf_ks: [10,", "rrf_ks: [-1,", "`hybrid.rrf_ks` is [-1,"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = params_with(tmp_path, old, new)
    with pytest.raises(InputError) as caught:
        load_params(path)
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_missing_parameter(tmp_path: Path) -> None:
    path = params_with(tmp_path, "  temperature: 0.02\n", "")
    with pytest.raises(InputError, match="missing parameter `finetune.temperature`"):
        load_params(path)


def test_the_preset_applied_to_params_yaml_is_a_complete_valid_params_file(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    preset = ROOT / "presets" / "mldr-zh-bge-base.yaml"
    changes = apply_preset(preset, ROOT / "params.yaml", tmp_path / "params.yaml")
    real = load_params(tmp_path / "params.yaml")
    assert real.embedding.pooling == "cls" and real.finetune.lr == 1e-5 and real.dataset == "data/mldr-zh"
    demo, applied = read_yaml(ROOT / "params.yaml"), read_yaml(tmp_path / "params.yaml")
    assert dotted(demo).keys() == dotted(applied).keys(), "every key the pipeline reads, and no other"
    assert {k for k, v in dotted(demo).items() if dotted(applied)[k] != v} <= changes.keys(), "only what it sets"
    assert all(dotted(applied)[k] == v for k, v in changes.items()), "everything it sets"
    # A preset may repeat a demo value that its recipe shares (reranker.epochs 1): a later change of the
    # demo's then leaves the real run's recipe as it was.
    text = (tmp_path / "params.yaml").read_text(encoding="utf-8")
    assert "# How text becomes a vector." in text, "params.yaml's comments are kept"


def test_a_preset_key_params_yaml_lacks_is_named(tmp_path: Path) -> None:
    preset = tmp_path / "preset.yaml"
    preset.write_text("finetune:\n  learning_rate: 1.0e-5\n", encoding="utf-8")
    with pytest.raises(InputError, match="`finetune.learning_rate` is not a parameter of"):
        apply_preset(preset, ROOT / "params.yaml", tmp_path / "out.yaml")
    preset.write_text("lr: fast\n", encoding="utf-8")
    with pytest.raises(InputError, match="gives invalid params: `lr` is 'fast'"):
        apply_preset(preset, ROOT / "params.yaml", tmp_path / "out.yaml")
    assert not (tmp_path / "out.yaml").exists(), "nothing is written on a bad preset"


def test_deepspeed_config_must_be_a_tracked_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # stages run from the repository root; the path is relative to it
    path = params_with(tmp_path, "deepspeed: null", "deepspeed: configs/deepspeed_zero1.json")
    assert load_params(path).finetune.deepspeed == "configs/deepspeed_zero1.json"
    outside = tmp_path / "ds.json"
    outside.write_text("{}")
    for value, problem in [(str(outside), "a file under configs/"), ("../configs/deepspeed_zero1.json",
                                                                     "a file under configs/"),
                           ("configs/missing.json", "an existing DeepSpeed config file")]:
        with pytest.raises(InputError, match=problem):
            load_params(params_with(tmp_path, "deepspeed: null", f"deepspeed: {value}"))


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("deepspeed_*.json")), ids=lambda p: p.name)
def test_deepspeed_configs_leave_optimizer_and_schedule_to_the_trainer(config: Path) -> None:
    """With its own optimizer and scheduler sections, DeepSpeed would train another recipe than a plain run:
    WarmupDecayLR's default log-shaped warmup, and weight decay on biases and LayerNorm weights."""
    settings = json.loads(config.read_text(encoding="utf-8"))
    assert "optimizer" not in settings and "scheduler" not in settings
    assert settings["zero_optimization"]["stage"] in (0, 1)
