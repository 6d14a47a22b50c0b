from __future__ import annotations

import shutil
from pathlib import Path

from conftest import TINY_MODEL

from zh_retrieval.reporting.report import (
    at_k_rows,
    evidence_table,
    forgetting_table,
    hybrid_lines,
    render_report,
    rerank_line,
    results_table,
    revision,
)

METRICS = {
    "base": {"recall_at_10": 0.1, "ndcg_at_10": 0.05, "mrr_at_10": 0.04, "recall_at_100": 0.4, "recall_at_1": 0.0,
             "ndcg_at_1": 0.0, "ndcg_at_100": 0.1, "num_queries": 3, "num_corpus": 1000,
             "query_instruction": "说明：", "corpus_precision": "bf16", "query_precision": "bf16"},
    "finetuned": {"recall_at_10": 0.3, "ndcg_at_10": 0.2, "mrr_at_10": 0.15, "recall_at_100": 0.8,
                  "num_queries": 3, "num_corpus": 1000, "corpus_precision": "fp32", "query_precision": "fp32"},
    "bm25": {"recall_at_10": 0.9, "ndcg_at_10": 0.7, "mrr_at_10": 0.6, "recall_at_100": 1.0},
}


def test_table_has_a_row_per_run_and_the_gain() -> None:
    lines = results_table(METRICS)
    assert lines[0] == "| | recall@10 | ndcg@10 | mrr@10 | recall@100 |"
    assert lines[2] == "| base model | 0.1000 | 0.0500 | 0.0400 | 0.4000 |"
    assert lines[4].startswith("| BM25 | 0.9000")
    assert lines[5] == "| gain (fine-tuned − base) | +0.2000 | +0.1500 | +0.1100 | +0.4000 |"


def test_table_follows_the_evaluated_ks() -> None:
    only_small_k = {stem: {k: v for k, v in metrics.items() if not k.endswith("_100")}
                    for stem, metrics in METRICS.items()}
    assert results_table(only_small_k)[0] == "| | recall@10 | ndcg@10 | mrr@10 |"
    without_10 = {stem: {"recall_at_5": 0.5, "ndcg_at_5": 0.4, "mrr_at_10": 0.3, "recall_at_50": 0.9, "ndcg_at_50": 0.5}
                  for stem in ("base", "finetuned")}
    assert results_table(without_10)[0] == "| | recall@5 | ndcg@5 | mrr@10 | recall@50 |"


def test_report_names_revisions_counts_and_params(tmp_path: Path) -> None:
    dataset = tmp_path / "data"
    dataset.mkdir()
    (dataset / "corpus.jsonl").write_text("{}\n")
    params = {"base_model": str(TINY_MODEL), "dataset": str(dataset), "lr": 2e-5, "seed": 1,
              "finetune": {"epochs": 2, "train_group_size": 8}, "mine": {"hard_ratio": 0.7},
              "embedding": {"pooling": "cls", "passage_max_len": 512}}
    dev = {stem: {**values, "num_queries": 2} for stem, values in METRICS.items()}
    dev["base"] = {**dev["base"], "ndcg_at_10": 0.06}
    text = render_report({"dev": dev, "test": METRICS}, params, {"improved": 2, "unchanged": 0, "degraded": 1})
    assert "Test, 3 queries over 1,000 documents: the final figures, read by no choice." in text
    assert "Dev, 2 queries: where the merge weight" in text
    test_part, dev_part = text.split("Dev, 2 queries")
    assert "| base model | 0.1000 | 0.0500 |" in test_part and "| base model | 0.1000 | 0.0600 |" in dev_part
    assert "lr 2e-05" in text and "hard_ratio 0.7" in text and "pooling cls" in text
    assert f"({revision(TINY_MODEL)})" in text and revision(TINY_MODEL).startswith("sha256:")
    assert "2 improved, 0 unchanged, 1 degraded" in text and "`说明：`" in text
    assert "base corpus bf16 / queries bf16, finetuned corpus fp32 / queries fp32" in text


def test_revision_prefers_the_recorded_hub_revision(tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(TINY_MODEL, model)
    assert revision(model) == revision(TINY_MODEL), "a content hash, independent of where the directory is"
    (model / "REVISION").write_text("BAAI/bge-base-zh-v1.5@abc123\n")
    assert revision(model) == "BAAI/bge-base-zh-v1.5@abc123"


def test_at_k_rows_in_k_order() -> None:
    assert at_k_rows(METRICS["base"]) == [[1, 0.0, 0.0], [10, 0.1, 0.05], [100, 0.4, 0.1]]


def test_readme_shows_the_committed_report() -> None:
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- report -->\n", 1)[1].split("<!-- /report -->", 1)[0]
    report = (root / "metrics" / "report.md").read_text(encoding="utf-8").removeprefix("# Results\n")
    shown, left_out = report.split("\nBy where each test query's evidence starts", 1)
    assert block.strip() == shown.strip(), "run scripts/update_readme_results.py"
    assert "evidence in |" in left_out and "evidence in |" not in block, "the evidence split stays in the report"
    assert "Test, 237 queries" in block and "read by no choice" in block and "\nDev, " in left_out


def test_evidence_table_splits_every_system_including_maxp() -> None:
    def split(first: float, later: float) -> dict:
        return {"by_evidence": {"first_passage": {"ndcg_at_10": first, "recall_at_10": first, "queries": 3},
                                "later": {"ndcg_at_10": later, "recall_at_10": later, "queries": 2}}}

    metrics = {stem: {**values, **split(0.5, 0.1)} for stem, values in METRICS.items()}
    metrics["finetuned"]["maxp"] = split(0.4, 0.3)
    lines = evidence_table(metrics, 512)
    assert "first passage (512 tokens" in lines[1]
    assert lines[3] == ("| evidence in | ndcg@10, first passage (3) | ndcg@10, later (2) "
                        "| recall@10, first passage (3) | recall@10, later (2) |")
    assert "| fine-tuned, MaxP | 0.4000 | 0.3000 | 0.4000 | 0.3000 |" in lines
    assert "| BM25 | 0.5000 | 0.1000 | 0.5000 | 0.1000 |" in lines
    assert evidence_table(METRICS, 512) == [], "no split without evidence positions (MLDR itself)"


def test_forgetting_table_compares_domain_with_general_and_warns_on_a_regression() -> None:
    metrics = {**METRICS, "merged": {**METRICS["finetuned"], "ndcg_at_10": 0.15},
               "general_base": {"ndcg_at_10": 0.40}, "general_finetuned": {"ndcg_at_10": 0.37},
               "general_merged": {"ndcg_at_10": 0.39}}
    params = {"general": {"dataset": "data/general", "max_ndcg_drop": 0.02}, "merge": {"finetuned_weight": 0.5}}
    lines = forgetting_table(metrics, params)
    assert "| base model | 0.0500 | 0.4000 | – |" in lines
    assert "| fine-tuned | 0.2000 | 0.3700 | -0.0300 |" in lines
    assert "| merged with the base (LM-Cocktail) | 0.1500 | 0.3900 | -0.0100 |" in lines
    assert any(line.startswith("**Warning: fine-tuning lowered general nDCG@10 by 0.0300") and "0.3900" in line
               for line in lines)
    tolerant = forgetting_table(metrics, {**params, "general": {"dataset": "d", "max_ndcg_drop": 0.05}})
    assert not any("Warning" in line for line in tolerant)
    assert forgetting_table(METRICS, params) == [], "no general metrics, no table"


def test_hybrid_lines_name_the_dev_choice_and_warn_when_test_falls_below_bm25() -> None:
    test = {**METRICS,
            "hybrid_weighted": {"ndcg_at_10": 0.75, "dense_run": "maxp", "chosen_on_dev": {"dense_weight": 0.2}},
            "hybrid_rrf": {"ndcg_at_10": 0.65, "dense_run": "maxp",
                           "chosen_on_dev": {"rrf_k": 60, "dense_weight": 0.3}}}
    lines = hybrid_lines(test)
    assert "fine-tuned MaxP run" in lines[0]
    assert "weighted at dense_weight 0.2; RRF at rrf_k 60, dense_weight 0.3" in lines[0]
    warnings = [line for line in lines if line.startswith("**")]
    assert warnings == ["**On test, the RRF hybrid (0.6500 nDCG@10) falls below BM25 (0.7000), at rrf_k 60, "
                        "dense_weight 0.3, the point dev chose.**"]
    assert hybrid_lines(METRICS) == [], "no hybrid metrics, no lines"
    bm25_alone = {**test, "hybrid_weighted": {**test["hybrid_weighted"], "chosen_on_dev": {"dense_weight": 0.0}}}
    assert "weighted at dense_weight 0 (BM25's order)" in hybrid_lines(bm25_alone)[0]


def test_rerank_line_names_the_recipe_and_counts_its_epochs() -> None:
    reranked = {"depth": 20, "first_stage": "hybrid_rrf", "passage": "dense_best", "max_length": 192}
    test = {**METRICS, "reranked_base": reranked, "reranked_finetuned": reranked}
    params = {"reranker": {"base_model": "models/r", "lr": 0.0001, "epochs": 1}}
    assert "(`models/r`; fine-tuned at lr 0.0001, 1 epoch) through" in rerank_line(test, params)[0]
    params["reranker"]["epochs"] = 3
    assert ", 3 epochs) through" in rerank_line(test, params)[0]
    assert rerank_line(METRICS, params) == [], "nothing reranked, no line"
