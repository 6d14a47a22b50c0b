"""The recipe experiments' tables: one row per seed, then the mean and sample standard deviation."""

from __future__ import annotations

import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))

import recipe_experiments  # noqa: E402


def metrics(ndcg: float, later: float) -> dict:
    return {"dev/finetuned": {"ndcg_at_10": ndcg, "by_evidence": {"later": {"ndcg_at_10": later}},
                              "maxp": {"ndcg_at_10": 0.3}},
            "dev/base": {"ndcg_at_10": 0.2},
            "test/finetuned": {"ndcg_at_10": 0.9}}  # never read: choices are made on dev


def test_rows_per_seed_then_mean_and_spread() -> None:
    found = {"guard-hard07-seed42": metrics(0.30, 0.10), "guard-hard07-seed1": metrics(0.26, 0.12),
             "instr-off-seed2": metrics(0.20, 0.05)}
    lines = recipe_experiments.tables(found).splitlines()
    assert "| hard_ratio 0.7 | 42 | 0.3000 | – | 0.1000 | 0.3000 | – | – | 0.2000 |" in lines
    assert "| **hard_ratio 0.7**, mean ± sd | 2 seeds | 0.280 ± 0.028 | – | 0.110 ± 0.014 | 0.300 ± 0.000 | – | – " \
           "| 0.200 ± 0.000 |" in lines
    assert "| **off**, mean ± sd | 1 seeds | 0.200 | – | 0.050 | 0.300 | – | – | 0.200 |" in lines
    assert "| **hard_ratio 0 (random only)**, mean ± sd | 0 seeds | – | – | – | – | – | – | – |" in lines


def test_merge_sweep_rows_follow_the_weights_and_feed_the_plot(tmp_path) -> None:
    import csv

    import merge_sweep

    found = {"merge-w05": {"dev/merged": {"ndcg_at_10": 0.3, "maxp": {"ndcg_at_10": 0.35}},
                           "dev/general_merged": {"ndcg_at_10": 0.4}, "test/merged": {"ndcg_at_10": 0.9}},
             "merge-w0": {"dev/merged": {"ndcg_at_10": 0.2}, "dev/general_merged": {"ndcg_at_10": 0.45}}}
    rows = merge_sweep.sweep_rows(found)
    assert rows == [[0.0, 0.2, None, 0.45], [0.5, 0.3, 0.35, 0.4]]
    assert "| 0.5 | 0.3000 | 0.3500 | 0.4000 |" in merge_sweep.table(rows).splitlines()
    merge_sweep.write_csv(rows, tmp_path / "sweep.csv")
    with (tmp_path / "sweep.csv").open() as f:
        assert next(csv.reader(f)) == ["finetuned_weight", "domain_ndcg_at_10", "domain_maxp_ndcg_at_10",
                                       "general_ndcg_at_10"]


def test_rerank_table_compares_the_first_stage_with_both_rerankers_per_evidence_position() -> None:
    import rerank_experiments

    def run(first: float, base: float, tuned: float) -> dict:
        def system(ndcg: float) -> dict:
            return {"ndcg_at_10": ndcg, "mrr_at_10": ndcg / 2,
                    "by_evidence": {"first_passage": {"ndcg_at_10": ndcg + 0.1}, "later": {"ndcg_at_10": ndcg - 0.1}}}
        return {"dev/hybrid_rrf": system(first), "dev/reranked_base": system(base),
                "dev/reranked_finetuned": system(tuned), "test/reranked_finetuned": system(0.99)}

    lines = rerank_experiments.table({"rerank-seed42": run(0.8, 0.2, 0.3), "rerank-seed1": run(0.6, 0.2, 0.5),
                                      "other-seed2": run(0.0, 0.0, 0.0)}).splitlines()
    assert lines[0] == "rerank (the committed params.yaml): 2 seeds (42, 1), mean ± sd:"
    assert "| first stage (RRF hybrid) | 0.700 ± 0.141 | 0.800 ± 0.141 | 0.600 ± 0.141 | 0.350 ± 0.071 |" in lines
    assert "| reranked, fine-tuned reranker | 0.400 ± 0.141 | 0.500 ± 0.141 | 0.300 ± 0.141 | 0.200 ± 0.071 |" in lines
    assert "- reranked (fine-tuned) − first stage, nDCG@10: -0.300 ± 0.283" in lines
    assert "- fine-tuned − base reranker, nDCG@10: +0.200 ± 0.141" in lines


def test_rerank_arms_read_only_their_own_runs() -> None:
    import rerank_experiments

    def run(tuned: float) -> dict:
        return {stem: {"ndcg_at_10": value} for stem, value in
                (("dev/hybrid_rrf", 0.5), ("dev/reranked_base", 0.4), ("dev/reranked_finetuned", tuned))}

    found = {"rerank-seed42": run(0.1), "rerank-lr1e-4-e1-seed42": run(0.6), "rerank-lr1e-4-e1-seed2": run(0.8)}
    lines = rerank_experiments.table(found, "rerank-lr1e-4-e1").splitlines()
    assert lines[0] == "rerank-lr1e-4-e1 (reranker.lr=1e-4 reranker.epochs=1): 2 seeds (42, 2), mean ± sd:"
    assert "- fine-tuned − base reranker, nDCG@10: +0.300 ± 0.141" in lines
    assert rerank_experiments.table(found).splitlines()[0].endswith(": 1 seeds (42), mean ± sd:")


def test_the_embedder_table_pairs_each_arm_with_the_committed_run_of_its_seed() -> None:
    import rerank_experiments

    def run(maxp: float, general: float) -> dict:
        return {"dev/finetuned": {"ndcg_at_10": 0.2, "maxp": {"ndcg_at_10": maxp}},
                "dev/general_finetuned": {"ndcg_at_10": general}}

    found = {"rerank-seed42": run(0.30, 0.37), "rerank-seed1": run(0.32, 0.38), "rerank-lr1e-4-e1-seed1": run(0.9, 0.9),
             "rerank-lr1e-3-e3-seed2": run(0.31, 0.38), "distill-base-teacher-seed1": run(0.9, 0.9),
             "distill-seed42": run(0.29, 0.36), "distill-seed1": run(0.28, 0.35), "distill-seed2": run(0.5, 0.4),
             "distill-seed7": run(0.5, 0.4)}
    lines = rerank_experiments.embedder_table(found, ["rerank", "distill"]).splitlines()
    assert lines[2] == "| rerank (committed) (42, 1) | 0.200 ± 0.000 | 0.310 ± 0.014 | – | – | 0.375 ± 0.007 |"
    assert lines[3].startswith("| distill (finetune.distill=true reranker.lr=1e-3 reranker.epochs=3) (42, 1, 2) "
                               "| 0.200 ± 0.000 | 0.357 ± ")
    # seed 1 pairs with the committed arm's run before another reranker arm's, seed 2 with a reranker arm's
    # (its embedder is the committed one), never with another distilling arm's; seed 7 is not a seed of the study
    assert lines[-1] == "- distill − not distilled, MaxP nDCG@10, paired by seed (3): +0.047 ± 0.125"
