"""Average a fine-tuned model's weights with its base model's (LM-Cocktail), to keep general ability.

merged = w x fine-tuned + (1 - w) x base, for every floating-point weight: FlagEmbedding's answer
to fine-tuned embedders losing general retrieval ability (LM-Cocktail, Xiao et al. 2023). The
averaging is LM-Cocktail's own `merge_param`; its `mix_models` is not used, because its loader
passes trust_remote_code=True (hard-coded in LM-Cocktail 0.0.4), which would run the code of a
model that carries its own, and its saving step writes a sentence-transformers config with CLS
pooling whatever the model was trained with. The models are loaded here as LM-Cocktail loads
them, without remote code, so the merged weights are the same bytes as its `mix_models` gives. The
output gets everything the fine-tuned directory holds (tokenizer, sentence-transformers modules
with the pooling and query prompt, training args) with the merged weights, plus merge.json saying
what was merged, so it loads in FlagModel and sentence-transformers exactly as the fine-tuned
model does.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch

from zh_retrieval.core.errors import InputError
from zh_retrieval.core.files import WEIGHT_FILES, atomic_dir, check_model_dir, check_no_own_code, tree_size, write_json

logger = logging.getLogger(__name__)

MERGE_RECORD = "merge.json"
# What must agree for two checkpoints' weights to be averaged name by name.
SHAPE_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
              "vocab_size", "max_position_embeddings")
NOT_COPIED = {*WEIGHT_FILES, "pytorch_model.bin", "config.json", MERGE_RECORD}


def check_same_shape(base_dir: Path, finetuned_dir: Path) -> None:
    configs = {d: json.loads((d / "config.json").read_text(encoding="utf-8")) for d in (base_dir, finetuned_dir)}
    differ = [k for k in SHAPE_KEYS if configs[base_dir].get(k) != configs[finetuned_dir].get(k)]
    if differ:
        raise InputError(finetuned_dir, f"cannot be merged with {base_dir}: their config.json differ in "
                         + ", ".join(f"{k} ({configs[base_dir].get(k)} vs {configs[finetuned_dir].get(k)})"
                                     for k in differ),
                         fix="merge a model with the base model it was fine-tuned from")


def load_encoder(model_dir: Path):
    """A model as LM-Cocktail's `load_embedder` loads it (AutoModel, on the CPU), but never with its own code."""
    from transformers import AutoModel

    check_no_own_code(model_dir)
    return AutoModel.from_pretrained(model_dir, trust_remote_code=False, use_safetensors=True,
                                     device_map={"": "cpu"})


def average_models(model_dirs: list[Path], weights: list[float]):
    """LM-Cocktail's `mix_models` for encoders, with the loader above: the first model, holding the weighted
    average of every floating-point weight (`merge_param`, which keeps integer buffers as they are)."""
    from LM_Cocktail.utils import merge_param  # imports sentence-transformers and accelerate: only when merging

    params = [load_encoder(d).state_dict() for d in model_dirs]
    averaged = merge_param(params, weights=weights)
    model = load_encoder(model_dirs[0])  # loaded a second time, as mix_models does (its RNG draws included)
    model.load_state_dict(averaged)
    return model


def model_bytes(model) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def weights_bytes(model_dir: Path) -> int:
    return sum(tree_size(model_dir / name) for name in WEIGHT_FILES)


def merge_models(base_dir: Path, finetuned_dir: Path, out_dir: Path, finetuned_weight: float, seed: int) -> Path:
    """Write OUT_DIR: the fine-tuned directory with weights averaged with the base model's."""
    import LM_Cocktail.utils  # noqa: F401  before the seed: nothing it does at import moves the draws below

    for model_dir in (base_dir, finetuned_dir):
        check_model_dir(model_dir)
    check_same_shape(base_dir, finetuned_dir)
    # A base checkpoint saved without a pooler (the demo's) gets one initialised at load; seeded,
    # the merged file is the same bytes on every run. The pooler is not used by mean or CLS pooling.
    torch.manual_seed(seed)
    model = average_models([finetuned_dir, base_dir], [finetuned_weight, 1.0 - finetuned_weight])
    with atomic_dir(out_dir, needed_bytes=model_bytes(model) + tree_size(finetuned_dir) - weights_bytes(finetuned_dir)
                    ) as tmp:
        for path in sorted(finetuned_dir.iterdir()):
            if path.name in NOT_COPIED:
                continue
            if path.is_dir():
                shutil.copytree(path, tmp / path.name)
            else:
                shutil.copy2(path, tmp / path.name)
        model.save_pretrained(tmp, safe_serialization=True)
        write_json(tmp / MERGE_RECORD, {
            "method": "LM-Cocktail mix_models: weighted average of every floating-point weight",
            "finetuned_model": str(finetuned_dir),
            "base_model": str(base_dir),
            "finetuned_weight": finetuned_weight,
        })
    logger.info("merged %s (weight %.2f) with %s (weight %.2f) -> %s", finetuned_dir, finetuned_weight, base_dir,
                1.0 - finetuned_weight, out_dir)
    return out_dir
