"""The results report and the data of the comparison plots, from the metrics files of one run.

The report holds the base / fine-tuned / merged / BM25 / hybrid / reranked rows on test (the final figures,
read by no choice) and on dev (where choices are read), the gain, the hybrid's points chosen on
dev, query and document counts, the revisions of the model and dataset, and the params that
matter; the plots are recall@k and nDCG@k per model and how many queries fine-tuning improved,
left unchanged and degraded, on test.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

from zh_retrieval.core.errors import InputError
from zh_retrieval.core.files import atomic_file, revision
from zh_retrieval.core.params import EVAL_SPLITS
from zh_retrieval.retrieval.metrics import MRR_DEPTH

logger = logging.getLogger(__name__)

ROWS = [  # (metrics file stem, label)
    ("base", "base model"),
    ("finetuned", "fine-tuned"),
    ("merged", "merged with the base (LM-Cocktail)"),
    ("bm25", "BM25"),
    ("hybrid_rrf", "hybrid (RRF, BM25 + fine-tuned)"),
    ("hybrid_weighted", "hybrid (weighted, BM25 + fine-tuned)"),
    ("reranked_base", "reranked by the base reranker"),
    ("reranked_finetuned", "reranked by the fine-tuned reranker"),
]


GENERAL_ROWS = [(f"general_{stem}", stem, label) for stem, label in ROWS[:3]]  # (general stem, domain stem, label)


Metrics = dict[str, dict[str, Any]]  # metrics file stem => its contents, for one split


def load_metrics(metrics_dir: Path) -> dict[str, Metrics]:
    """split => that split's metrics files (METRICS_DIR/SPLIT/STEM.json)."""
    by_split: dict[str, Metrics] = {}
    for split in EVAL_SPLITS:
        found = by_split[split] = {}
        for stem in [s for s, _ in ROWS] + [g for g, _, _ in GENERAL_ROWS]:
            path = metrics_dir / split / f"{stem}.json"
            if path.is_file():
                found[stem] = json.loads(path.read_text(encoding="utf-8"))
        for required in ("base", "finetuned"):
            if required not in found:
                raise InputError(metrics_dir / split / f"{required}.json", "file not found",
                                 fix="run the evaluate stages first")
    return by_split


def evaluated_ks(metrics: dict[str, Any]) -> list[int]:
    """The cut-offs a metrics file holds (`evaluate.k`), ascending."""
    return sorted(int(key.rsplit("_", 1)[1]) for key in metrics if key.startswith("ndcg_at_"))


def columns(metrics: dict[str, Any]) -> list[str]:
    """Recall and nDCG at the largest k up to 10 (the smallest k if all are larger), MRR@10, and recall at the
    largest k: whatever `evaluate.k` holds."""
    ks = evaluated_ks(metrics)
    headline = max((k for k in ks if k <= 10), default=ks[0])
    chosen = [f"recall_at_{headline}", f"ndcg_at_{headline}", f"mrr_at_{MRR_DEPTH}"]
    return chosen + ([f"recall_at_{ks[-1]}"] if ks[-1] != headline else [])


def results_table(metrics: dict[str, dict[str, Any]]) -> list[str]:
    base, tuned = metrics["base"], metrics["finetuned"]
    shown = columns(base)
    lines = ["| | " + " | ".join(c.replace("_at_", "@") for c in shown) + " |", "|---" * (len(shown) + 1) + "|"]
    for stem, label in ROWS:
        if stem in metrics:
            lines.append(f"| {label} | " + " | ".join(f"{metrics[stem][c]:.4f}" for c in shown) + " |")
    lines.append("| gain (fine-tuned − base) | " + " | ".join(f"{tuned[c] - base[c]:+.4f}" for c in shown) + " |")
    if "maxp" in tuned:
        lines.append("| fine-tuned, MaxP over passages | " + " | ".join(f"{tuned['maxp'][c]:.4f}" for c in shown)
                     + " |")
    return lines


EVIDENCE_GROUPS = (("first_passage", "first passage"), ("later", "later"))


def evidence_table(metrics: dict[str, dict[str, Any]], passage_max_len: Any) -> list[str]:
    """nDCG and recall at the headline k, split by where each query's evidence starts; [] without that split."""
    if "by_evidence" not in metrics["base"]:
        return []
    k = columns(metrics["base"])[1].rsplit("_", 1)[1]
    shown = [f"ndcg_at_{k}", f"recall_at_{k}"]
    systems = []  # (label, metrics holding by_evidence)
    for stem, label in ROWS:
        if stem in metrics:
            systems.append((label, metrics[stem]))
            if "maxp" in metrics[stem]:
                systems.append((f"{label}, MaxP", metrics[stem]["maxp"]))
    counts = {group: metrics["base"]["by_evidence"].get(group, {}).get("queries", 0) for group, _ in EVIDENCE_GROUPS}
    header = [f"{name.replace('_at_', '@')}, {label} ({counts[group]})"
              for name in shown for group, label in EVIDENCE_GROUPS]
    lines = ["| evidence in | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for label, values in systems:
        cells = [f"{values['by_evidence'][group][name]:.4f}" if group in values.get("by_evidence", {}) else "–"
                 for name in shown for group, _ in EVIDENCE_GROUPS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return ["", f"By where each test query's evidence starts: in the first passage ({passage_max_len} tokens, "
            "what truncation keeps) or later (query counts in brackets):", "", *lines]


def forgetting_table(metrics: dict[str, dict[str, Any]], params: dict[str, Any]) -> list[str]:
    """Domain against general nDCG@10 for base, fine-tuned and merged, and a warning on a general regression."""
    if "general_base" not in metrics:
        return []
    general = params.get("general", {})
    k = columns(metrics["base"])[1].rsplit("_", 1)[1]
    name = f"ndcg_at_{k}"
    base_general = metrics["general_base"][name]
    lines = ["", f"Domain against general (`{general.get('dataset')}`, the forgetting check), nDCG@{k}; merged at "
             f"`merge.finetuned_weight: {params.get('merge', {}).get('finetuned_weight')}`:", "",
             f"| | domain nDCG@{k} | general nDCG@{k} | general change |", "|---|---|---|---|"]
    for general_stem, stem, label in GENERAL_ROWS:
        if general_stem in metrics and stem in metrics:
            value = metrics[general_stem][name]
            change = "–" if stem == "base" else f"{value - base_general:+.4f}"
            lines.append(f"| {label} | {metrics[stem][name]:.4f} | {value:.4f} | {change} |")
    limit = general.get("max_ndcg_drop")
    if "general_finetuned" in metrics and isinstance(limit, float | int):
        drop = base_general - metrics["general_finetuned"][name]
        if drop > limit:
            merged = metrics.get("general_merged", {}).get(name)
            keeps = f"; the merged model scores {merged:.4f} there" if merged is not None else ""
            lines += ["", f"**Warning: fine-tuning lowered general nDCG@{k} by {drop:.4f}, more than "
                      f"`general.max_ndcg_drop` ({limit}){keeps}.**"]
    return lines


def precision_line(metrics: dict[str, dict[str, Any]], params: dict[str, Any]) -> str:
    """Which precision each model's corpus and queries were encoded in, and training's."""
    encoded = ", ".join(f"{stem} corpus {metrics[stem].get('corpus_precision', '?')} / queries "
                        f"{metrics[stem].get('query_precision', '?')}" for stem in ("base", "finetuned"))
    training = params.get("finetune", {}).get("precision", "?")
    setting = params.get("encode", {}).get("precision", "?")
    return f"- precision: {encoded}; training {training} (`encode.precision: {setting}`)"


HYBRIDS = (("hybrid_weighted", "weighted"), ("hybrid_rrf", "RRF"))


def hybrid_lines(test: Metrics) -> list[str]:
    """The hybrids' points chosen on dev, and a warning for each that test then puts below BM25."""
    chosen, warnings = [], []
    bm25 = test.get("bm25", {}).get("ndcg_at_10")
    for stem, label in HYBRIDS:
        if stem not in test or "chosen_on_dev" not in test[stem]:
            continue
        settings = test[stem]["chosen_on_dev"]
        point = ", ".join(f"{k} {v:g}" for k, v in settings.items())
        alone = {0: " (BM25's order)", 1: " (the dense run's order)"}.get(settings.get("dense_weight"), "")
        chosen.append(f"{label} at {point}{alone}")
        value = test[stem].get("ndcg_at_10")
        if bm25 is not None and value is not None and value < bm25:
            warnings.append(f"**On test, the {label} hybrid ({value:.4f} nDCG@10) falls below BM25 ({bm25:.4f}), at "
                            f"{point}, the point dev chose.**")
    if not chosen:
        return []
    run = test.get("hybrid_weighted", test.get("hybrid_rrf", {})).get("dense_run", "truncated")
    return [f"- hybrids (BM25 + the fine-tuned {'MaxP' if run == 'maxp' else 'truncated'} run), each at the point "
            f"with the best dev nDCG@10 of its grid (`metrics/hybrid_grid.json`): {'; '.join(chosen)}",
            *(["", *warnings] if warnings else [])]


RERANKED = ("reranked_base", "reranked_finetuned")
FIRST_STAGES = {"hybrid_rrf": "the RRF hybrid", "hybrid_weighted": "the weighted hybrid",
                "dense": "the fine-tuned dense run", "bm25": "BM25"}
PASSAGES = {"dense_best": "the passage the fine-tuned embedder scores highest", "bm25_best": "BM25's best passage",
            "truncated": "the document truncated"}


def rerank_line(test: Metrics, params: dict[str, Any]) -> list[str]:
    """What the reranked rows rescored: the first stage, the depth, the passage and the reranker's length."""
    found = [test[stem] for stem in RERANKED if stem in test]
    if not found:
        return []
    first = found[0]
    reranker = params.get("reranker", {})
    epochs = reranker.get("epochs")
    return [f"- reranked: the top {first['depth']} of {FIRST_STAGES.get(first['first_stage'], first['first_stage'])} "
            f"by a cross-encoder (`{reranker.get('base_model')}`; fine-tuned at lr {reranker.get('lr')}, "
            f"{epochs} epoch{'' if epochs == 1 else 's'}) through {PASSAGES.get(first['passage'], first['passage'])}, "
            f"{first['max_length']} tokens a pair"]


def render_report(by_split: dict[str, Metrics], params: dict[str, Any], changes: dict[str, int]) -> str:
    metrics, dev = by_split["test"], by_split["dev"]
    base = metrics["base"]
    finetune, mine = params.get("finetune", {}), params.get("mine", {})
    embedding = params.get("embedding", {})
    setting = [
        f"- model: `{params['base_model']}` ({revision(Path(params['base_model']))}); "
        f"dataset: `{params['dataset']}` ({revision(Path(params['dataset']))})",
        f"- lr {params['lr']}, epochs {finetune.get('epochs')}, batch {finetune.get('batch_size')}, "
        f"train_group_size {finetune.get('train_group_size')}, temperature {finetune.get('temperature')}, "
        f"pooling {embedding.get('pooling')}, passage_max_len {embedding.get('passage_max_len')}, "
        f"hard_ratio {mine.get('hard_ratio')}, seed {params.get('seed')}",
        f"- mining: positive {mine.get('positive')}, guard {mine.get('guard')} (margin "
        f"{mine.get('false_negative_margin')} of the {mine.get('guard_reference')} score), negative text "
        f"{mine.get('negative_text')}",
        f"- query instruction: `{base.get('query_instruction', '')}`",
        precision_line(metrics, params),
        f"- nDCG@10 per query, fine-tuned vs base: {changes['improved']} improved, {changes['unchanged']} unchanged, "
        f"{changes['degraded']} degraded",
    ]
    evidence = evidence_table(metrics, embedding.get("passage_max_len"))
    forgetting = forgetting_table(metrics, params)
    test_heading = (f"Test, {base['num_queries']} queries over {base['num_corpus']:,} documents: the final figures, "
                    "read by no choice.")
    dev_heading = (f"Dev, {dev['base']['num_queries']} queries: where the merge weight, the hybrids' points and the "
                   "recipes are chosen.")
    return "\n".join(["# Results", "", test_heading, "", *results_table(metrics), "", *setting, *hybrid_lines(metrics),
                      *rerank_line(metrics, params),
                      *forgetting, *evidence, "", dev_heading, "", *results_table(dev),
                      *forgetting_table(dev, params), ""])


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with atomic_file(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def at_k_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    return [[k, metrics[f"recall_at_{k}"], metrics[f"ndcg_at_{k}"]] for k in evaluated_ks(metrics)]
