"""A released model's card: the model directory copied with a README.md in the hub's model-card layout.

The card has YAML front matter (base model, license, language, tags, datasets, library), what the
model was trained from and how (params, the mined negatives' counts), what it scored on the
domain and the general set against the base model, and how to load it with its query
instruction. The scores exist only after evaluation, which reads the model directory, so the
card goes into a copy: the evaluated directory is never edited after the fact. `dvc artifacts
get` and `dvc get` users receive a model that explains itself.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from zh_retrieval.core.errors import InputError
from zh_retrieval.core.files import atomic_dir, check_model_dir, revision

logger = logging.getLogger(__name__)

CARD = "README.md"
DEFAULT_LICENSE = "other"  # when the base model's card does not say


def front_matter(path: Path) -> dict[str, Any]:
    """The YAML block at the top of a model card, or {} when there is none."""
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---\n") or "\n---" not in text[4:]:
        return {}
    data = YAML(typ="safe", pure=True).load(text[4 : text.index("\n---", 4)])
    return data if isinstance(data, dict) else {}


def hub_id(path: Path) -> str:
    """The hub repository a fetched directory came from (its REVISION file), else the local path."""
    recorded = path / "REVISION"
    if recorded.is_file():
        return recorded.read_text(encoding="utf-8").strip().split("@", 1)[0]
    return str(path)


def read_metrics(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(path, "file not found", fix="run the evaluation stages before packaging")
    return json.loads(path.read_text(encoding="utf-8"))


def hard_window(mine: dict[str, Any]) -> str:
    """Where hard negatives come from, as the guard kind walks the base model's ranking (mining/guard.py)."""
    low, high = mine["hard_rank_min"], mine["hard_rank_max"]
    if mine["guard"] == "truncated":
        return f"from ranks {low}-{high}"
    return (f"the first {high - low + 1} candidates that pass the guard, from rank {low} down to rank "
            f"{mine['random_rank_min']}")


def score(metrics: dict[str, Any], key: str) -> str:
    value = metrics.get(key)
    return f"{value:.4f}" if isinstance(value, float | int) else "–"


def render_card(name: str, params: dict[str, Any], metrics: dict[str, dict[str, Any]], merge: dict[str, Any] | None
                ) -> str:
    base_model, dataset = Path(params["base_model"]), Path(params["dataset"])
    base_card = front_matter(base_model / CARD)
    general = params.get("general", {})
    embedding, finetune, mine = params["embedding"], params["finetune"], params["mine"]
    meta = {
        "base_model": hub_id(base_model),
        "license": base_card.get("license", DEFAULT_LICENSE),
        "language": ["zh"],
        "library_name": "sentence-transformers",
        "pipeline_tag": "sentence-similarity",
        "tags": ["sentence-transformers", "feature-extraction", "sentence-similarity", "retrieval", "dvc",
                 *(["lm-cocktail", "merge"] if merge else [])],
        "datasets": [hub_id(dataset)],
    }
    yaml_lines = []
    for key, value in meta.items():
        shown = "[" + ", ".join(json.dumps(v, ensure_ascii=False) for v in value) + "]" if isinstance(value, list) \
            else json.dumps(value, ensure_ascii=False)
        yaml_lines.append(f"{key}: {shown}")
    instruction = embedding.get("query_instruction") or ""
    pooling = embedding["pooling"]
    mined = metrics["mine"]
    title = "merged with its base model (LM-Cocktail)" if merge else "fine-tuned"
    rows = [("base model", metrics["base"], metrics["general_base"]),
            (f"this model ({name})", metrics[name], metrics[f"general_{name}"])]
    lines = [
        "---", *yaml_lines, "---",
        f"# {hub_id(base_model)}, {title} for retrieval on `{hub_id(dataset)}`",
        "",
        f"Made by this project's DVC pipeline (stage `package@{name}`) from `{base_model}` "
        f"({revision(base_model)}) and `{dataset}` ({revision(dataset)}).",
        "",
        "## Training",
        "",
        f"- FlagEmbedding contrastive fine-tuning: lr {params['lr']}, epochs {finetune['epochs']}, batch "
        f"{finetune['batch_size']} queries a step (over all processes), "
        f"train_group_size {finetune['train_group_size']} "
        f"(1 positive + {finetune['train_group_size'] - 1} negatives), temperature {finetune['temperature']}, "
        f"seed {params['seed']}, {finetune['precision']}",
        f"- pooling {pooling}, normalised; passages up to {embedding['passage_max_len']} tokens, queries up to "
        f"{embedding['query_max_len']}",
        f"- positives: `{mine['positive']}`; negatives mined with the base model: hard_ratio {mine['hard_ratio']} "
        f"{hard_window(mine)}, guard `{mine['guard']}` at margin {mine['false_negative_margin']} of the "
        f"`{mine.get('guard_reference')}` score, dataset negatives share {mine['dataset_negative_share']}",
        f"- mined: {mined.get('hard_negatives')} hard, {mined.get('random_negatives')} random, "
        f"{mined.get('dataset_negatives')} dataset negatives for {mined.get('queries')} queries; "
        f"{mined.get('queries_without_hard')} queries got no hard negative",
    ]
    if merge:
        lines.append(f"- then merged: {merge['finetuned_weight']} x fine-tuned + {1 - merge['finetuned_weight']:g} x "
                     f"base, every weight (LM-Cocktail `mix_models`)")
    lines += [
        "",
        "## Evaluation",
        "",
        f"Domain: {metrics['base'].get('num_queries')} test queries of `{dataset}` over "
        f"{metrics['base'].get('num_corpus')} documents. General: `{general.get('dataset')}`, the forgetting check.",
        "",
        "| | domain nDCG@10 | domain recall@10 | domain nDCG@10, MaxP | general nDCG@10 |",
        "|---|---|---|---|---|",
        *(f"| {label} | {score(domain, 'ndcg_at_10')} | {score(domain, 'recall_at_10')} | "
          f"{score(domain.get('maxp', {}), 'ndcg_at_10')} | {score(general_metrics, 'ndcg_at_10')} |"
          for label, domain, general_metrics in rows),
        "",
        "## Use",
        "",
        "Queries take the instruction; documents do not.",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "model = SentenceTransformer(\"path/to/this/directory\")",
        "queries = model.encode([\"...\"], prompt_name=\"query\", normalize_embeddings=True)",
        "documents = model.encode([\"...\"], normalize_embeddings=True)",
        "",
        "from FlagEmbedding import FlagModel",
        f"model = FlagModel(\"path/to/this/directory\", pooling_method={pooling!r},",
        f"                  query_instruction_for_retrieval={instruction!r})",
        "scores = model.encode_queries([\"...\"]) @ model.encode_corpus([\"...\"]).T",
        "```",
        "",
    ]
    return "\n".join(lines)


def package(model_dir: Path, out_dir: Path, name: str, params: dict[str, Any], metrics_dir: Path) -> Path:
    """Copy MODEL_DIR to OUT_DIR with its card; `params` is params.yaml as written (the card quotes it)."""
    check_model_dir(model_dir)
    # Test, the split no choice read: a card reports what the model scores, not what it was chosen on.
    metrics = {stem: read_metrics(metrics_dir / "test" / f"{stem}.json")
               for stem in ("base", name, "general_base", f"general_{name}")}
    metrics["mine"] = read_metrics(metrics_dir / "mine.json")
    merge_record = model_dir / "merge.json"
    merge = json.loads(merge_record.read_text(encoding="utf-8")) if merge_record.is_file() else None
    card = render_card(name, params, metrics, merge)
    with atomic_dir(out_dir) as tmp:
        shutil.copytree(model_dir, tmp, dirs_exist_ok=True)
        for path in tmp.rglob("*"):  # copies of DVC's read-only cache files
            path.chmod(0o755 if path.is_dir() else 0o644)
        (tmp / CARD).write_text(card, encoding="utf-8")
    logger.info("packaged %s with its model card -> %s", model_dir, out_dir)
    return out_dir
