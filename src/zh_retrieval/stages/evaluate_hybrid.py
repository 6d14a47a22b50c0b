"""evaluate_hybrid: fuse the BM25 run with the dense run, two ways, each at the grid point dev scores best.

    python -m zh_retrieval.stages.evaluate_hybrid BM25_EVAL_DIR DENSE_EVAL_DIR PREPARED_DIR OUT_DIR METRICS_DIR \
        --params params.yaml

The dense run is MaxP's (DENSE_EVAL_DIR/SPLIT/maxp/run.trec) when `long_documents.maxp` is on, the
run one would deploy on long documents, else the truncated one. Weighted score fusion tries every
`hybrid.dense_weights`, reciprocal rank fusion every weight with every `hybrid.rrf_ks`
(retrieval/fusion.py); each keeps the point with the best dev nDCG@10, and test is scored once,
at that point. Writes OUT_DIR/SPLIT/{rrf,weighted}/ (run.trec, per_query.jsonl),
METRICS_DIR/SPLIT/hybrid_{rrf,weighted}.json (with the chosen point) and METRICS_DIR/hybrid_grid.json
(dev nDCG@10 at every point).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

from zh_retrieval.core.errors import InputError, run_stage
from zh_retrieval.core.files import atomic_dir, write_json
from zh_retrieval.core.params import EVAL_SPLITS, HybridParams, load_params
from zh_retrieval.data.prepared import load_eval_queries, load_evidence_groups
from zh_retrieval.retrieval.fusion import reciprocal_rank_fusion, top, weighted_fusion
from zh_retrieval.retrieval.metrics import Run, read_trec_run, score_run

logger = logging.getLogger(__name__)

CHOICE_METRIC = "ndcg_at_10"
Fuse = Callable[[Run, Run], dict[str, dict[str, float]]]


def grid(params: HybridParams) -> dict[str, dict[str, tuple[dict[str, float], Fuse]]]:
    """method => point name => (its settings, dense run and BM25 run => fused run)."""

    def weighted(w: float) -> Fuse:
        return lambda dense, sparse: weighted_fusion(dense, sparse, w)

    def rrf(w: float, k: int) -> Fuse:
        return lambda dense, sparse: reciprocal_rank_fusion([dense, sparse], k, [w, 1 - w])

    return {
        # `g` keeps distinct weights distinct (0.12 and 0.125); no dot, which DVC would read as nesting.
        "weighted": {f"w{w:g}".replace(".", "_"): ({"dense_weight": w}, weighted(w)) for w in params.dense_weights},
        "rrf": {f"k{k}_w{w:g}".replace(".", "_"): ({"rrf_k": k, "dense_weight": w}, rrf(w, k))
                for k in params.rrf_ks for w in params.dense_weights},
    }


def read_run(path: Path) -> Run:
    if not path.is_file():
        raise InputError(path, "run file not found", fix="run the evaluation stage that writes it first")
    return read_trec_run(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bm25_dir", type=Path, help="evaluate_bm25's output (SPLIT/run.trec)")
    parser.add_argument("dense_dir", type=Path, help="the dense model's evaluation output (SPLIT/[maxp/]run.trec)")
    parser.add_argument("prepared_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("metrics_dir", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    params = load_params(args.params)
    ks = params.evaluate.k
    dense_kind = "maxp" if params.long_documents.maxp else "truncated"
    runs, qrels, groups = {}, {}, {}
    for split in EVAL_SPLITS:
        _, qrels[split] = load_eval_queries(args.prepared_dir / split)
        groups[split] = load_evidence_groups(args.prepared_dir / split)
        dense_path = args.dense_dir / split / ("maxp" if dense_kind == "maxp" else "") / "run.trec"
        runs[split] = (read_run(dense_path), read_run(args.bm25_dir / split / "run.trec"))

    scored: dict[str, dict[str, float]] = {}  # method => point => dev nDCG@10
    chosen: dict[str, tuple[str, dict[str, float], Fuse]] = {}
    with tempfile.TemporaryDirectory(prefix="hybrid-grid-") as scratch:
        for method, points in grid(params.hybrid).items():
            scored[method] = {}
            for name, (settings, fuse) in points.items():
                point_dir = Path(scratch) / method / name
                point_dir.mkdir(parents=True)
                metrics = score_run(qrels["dev"], top(fuse(*runs["dev"]), max(ks)), ks, point_dir, "grid")
                scored[method][name] = metrics[CHOICE_METRIC]
            # Ties: the first in grid order, the smaller weight (for RRF, the smaller k before that).
            best = max(scored[method], key=scored[method].get)
            chosen[method] = (best, *points[best])

    results: dict[str, dict[str, dict]] = {split: {} for split in EVAL_SPLITS}
    with atomic_dir(args.out_dir) as tmp:
        for split in EVAL_SPLITS:
            for method, (name, settings, fuse) in chosen.items():
                out = tmp / split / method
                out.mkdir(parents=True)
                metrics = score_run(qrels[split], top(fuse(*runs[split]), max(ks)), ks, out, f"hybrid_{method}",
                                    groups[split])
                results[split][method] = metrics | {"num_queries": len(qrels[split]), "dense_run": dense_kind,
                                                    "chosen_on_dev": settings}
    for split, by_method in results.items():
        for method, metrics in by_method.items():
            write_json(args.metrics_dir / split / f"hybrid_{method}.json", metrics)
    write_json(args.metrics_dir / "hybrid_grid.json", {"chosen_by": f"dev {CHOICE_METRIC}", "dense_run": dense_kind,
                                                       **{f"dev_{CHOICE_METRIC}": scored}})
    for method, (name, settings, _) in chosen.items():
        logger.info("hybrid %s: %s chosen on dev (%s %.4f); test %s %.4f", method, settings, CHOICE_METRIC,
                    scored[method][name], CHOICE_METRIC, results["test"][method][CHOICE_METRIC])


if __name__ == "__main__":
    run_stage(main)
