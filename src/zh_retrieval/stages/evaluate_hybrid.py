"""evaluate_hybrid: fuse the BM25 run with a dense run, two ways, and score both like any other run.

    python -m zh_retrieval.stages.evaluate_hybrid BM25_RUN DENSE_RUN PREPARED_DIR OUT_DIR METRICS_DIR \
        --params params.yaml

Reciprocal rank fusion and weighted score fusion (retrieval/fusion.py). Writes
OUT_DIR/{rrf,weighted}/ (run.trec, per_query.jsonl) and METRICS_DIR/hybrid_{rrf,weighted}.json.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from zh_retrieval.core.errors import InputError, run_stage
from zh_retrieval.core.files import atomic_dir, write_json
from zh_retrieval.core.params import load_params
from zh_retrieval.data.prepared import load_eval_queries, load_evidence_groups
from zh_retrieval.retrieval.fusion import reciprocal_rank_fusion, top, weighted_fusion
from zh_retrieval.retrieval.metrics import read_trec_run, score_run

logger = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bm25_run", type=Path)
    parser.add_argument("dense_run", type=Path)
    parser.add_argument("prepared_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("metrics_dir", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    params = load_params(args.params)
    hybrid, ks = params.hybrid, params.evaluate.k
    _, qrels = load_eval_queries(args.prepared_dir)
    groups = load_evidence_groups(args.prepared_dir)
    for path in (args.bm25_run, args.dense_run):
        if not path.is_file():
            raise InputError(path, "run file not found", fix="run the evaluation stage that writes it first")
    sparse, dense = read_trec_run(args.bm25_run), read_trec_run(args.dense_run)
    fusions = {
        "rrf": reciprocal_rank_fusion([dense, sparse], hybrid.rrf_k),
        "weighted": weighted_fusion(dense, sparse, hybrid.dense_weight),
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
