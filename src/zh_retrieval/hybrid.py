"""evaluate_hybrid: fuse the BM25 run with a dense run, two ways, and score both like any other run.

    python -m zh_retrieval.hybrid BM25_RUN DENSE_RUN PREPARED_DIR OUT_DIR METRICS_DIR --params params.yaml

- reciprocal rank fusion (RRF): score(d) = sum over runs of 1 / (rrf_k + rank(d)), no score scales involved;
- weighted score fusion: w * dense + (1 - w) * bm25, each run's scores min-max normalised per query.
A document missing from one run's top list gets nothing from that run. Writes OUT_DIR/{rrf,weighted}/
(run.trec, per_query.jsonl) and METRICS_DIR/hybrid_{rrf,weighted}.json.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from pathlib import Path

from zh_retrieval.errors import InputError, run_stage
from zh_retrieval.files import atomic_dir, write_json
from zh_retrieval.metrics import Run, ranked, read_trec_run, score_run
from zh_retrieval.params import evaluate_params, hybrid_params
from zh_retrieval.prepare import load_eval_queries, load_evidence_groups

logger = logging.getLogger(__name__)


def reciprocal_rank_fusion(runs: list[Run], rrf_k: int) -> dict[str, dict[str, float]]:
    fused: dict[str, dict[str, float]] = {}
    for run in runs:
        for query_id, scores in run.items():
            target = fused.setdefault(query_id, {})
            for rank, (docid, _) in enumerate(ranked(scores), start=1):
                target[docid] = target.get(docid, 0.0) + 1.0 / (rrf_k + rank)
    return fused


def _min_max(scores: Mapping[str, float]) -> dict[str, float]:
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    span = high - low
    return {d: (s - low) / span if span > 0 else 1.0 for d, s in scores.items()}


def weighted_fusion(dense: Run, sparse: Run, dense_weight: float) -> dict[str, dict[str, float]]:
    fused: dict[str, dict[str, float]] = {}
    # dict.fromkeys, not a set: a set's order follows string hashes, which change with
    # PYTHONHASHSEED, and the run file's query order would change from run to run.
    for query_id in dict.fromkeys([*dense, *sparse]):
        d, s = _min_max(dense.get(query_id, {})), _min_max(sparse.get(query_id, {}))
        fused[query_id] = {doc: dense_weight * d.get(doc, 0.0) + (1 - dense_weight) * s.get(doc, 0.0)
                           for doc in dict.fromkeys([*d, *s])}
    return fused


def top(run: Mapping[str, Mapping[str, float]], k: int) -> dict[str, dict[str, float]]:
    return {q: dict(ranked(scores)[:k]) for q, scores in run.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bm25_run", type=Path)
    parser.add_argument("dense_run", type=Path)
    parser.add_argument("prepared_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("metrics_dir", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    params, ks = hybrid_params(args.params), evaluate_params(args.params).k
    _, qrels = load_eval_queries(args.prepared_dir)
    groups = load_evidence_groups(args.prepared_dir)
    for path in (args.bm25_run, args.dense_run):
        if not path.is_file():
            raise InputError(path, "run file not found", fix="run the evaluation stage that writes it first")
    sparse, dense = read_trec_run(args.bm25_run), read_trec_run(args.dense_run)
    fusions = {
        "rrf": reciprocal_rank_fusion([dense, sparse], params.rrf_k),
        "weighted": weighted_fusion(dense, sparse, params.dense_weight),
    }
    with atomic_dir(args.out_dir) as tmp:
        results = {}
        for name, fused in fusions.items():
            (tmp / name).mkdir()
            results[name] = score_run(qrels, top(fused, max(ks)), ks, tmp / name, f"hybrid_{name}", groups)
            results[name].update(num_queries=len(qrels))
    for name, metrics in results.items():
        write_json(args.metrics_dir / f"hybrid_{name}.json", metrics)
        logger.info("hybrid %s: ndcg_at_10 %.4f", name, metrics.get("ndcg_at_10", float("nan")))


if __name__ == "__main__":
    run_stage(main)
