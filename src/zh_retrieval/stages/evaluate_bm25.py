"""evaluate_bm25: the lexical baseline, BM25 over the same corpus and queries, scored like the dense models.

    python -m zh_retrieval.stages.evaluate_bm25 DATASET_DIR PREPARED_DIR OUT_DIR METRICS_DIR --params params.yaml

BM25 (k1 and b from params) over jieba's words or character bigrams (retrieval/bm25.py). Writes,
per split, OUT_DIR/SPLIT/run.trec and per_query.jsonl and METRICS_DIR/SPLIT/bm25.json in the same
format as the dense evaluation.
On MLDR zh, BM25 beats 512-token dense models, so it is a row users need, not a formality.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from zh_retrieval.core.errors import run_stage
from zh_retrieval.core.files import atomic_dir, write_json
from zh_retrieval.core.params import EVAL_SPLITS, load_params
from zh_retrieval.data.prepared import QRELS, check_qrels_docids, load_eval_queries, load_evidence_groups
from zh_retrieval.retrieval.bm25 import bm25_search, streamed_index
from zh_retrieval.retrieval.metrics import score_run

logger = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset_dir", type=Path)
    parser.add_argument("prepared_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("metrics_dir", type=Path, help="gets SPLIT/bm25.json for every split")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    params = load_params(args.params)
    bm25, ks = params.bm25, params.evaluate.k
    started = time.perf_counter()
    retriever, docids = streamed_index(args.dataset_dir, bm25)
    logger.info("bm25 (%s): %d documents indexed in %.1fs", bm25.tokenizer, len(docids), time.perf_counter() - started)
    evaluated = {}
    with atomic_dir(args.out_dir) as tmp:
        for split in EVAL_SPLITS:
            split_dir = args.prepared_dir / split
            queries, qrels = load_eval_queries(split_dir)
            check_qrels_docids(qrels, set(docids), split_dir / QRELS, args.dataset_dir)
            searched = time.perf_counter()
            run = bm25_search(retriever, docids, queries, bm25.tokenizer, max(ks))
            (tmp / split).mkdir()
            metrics = score_run(qrels, run, ks, tmp / split, "bm25", load_evidence_groups(split_dir))
            evaluated[split] = metrics | {"num_queries": len(qrels), "num_corpus": len(docids)}
            logger.info("bm25 %s: %d queries in %.1fs; ndcg_at_10 %.4f", split, len(qrels),
                        time.perf_counter() - searched, metrics.get("ndcg_at_10", float("nan")))
    for split, metrics in evaluated.items():
        write_json(args.metrics_dir / split / "bm25.json", metrics)


if __name__ == "__main__":
    run_stage(main)
