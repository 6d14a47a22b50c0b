"""evaluate: embed the evaluation queries with one model, search its corpus embeddings, score the ranking.

    python -m zh_retrieval.evaluate MODEL_DIR EMBEDDINGS_DIR PREPARED_DIR OUT_DIR METRICS_JSON --params params.yaml

EMBEDDINGS_DIR is the embed stage's output for the same model (the whole corpus, encoded once).

Writes OUT_DIR/run.trec (`query_id Q0 docid rank score tag`, the top max(k) documents of the
whole corpus for every query), OUT_DIR/per_query.jsonl (each query's metrics and the rank of its
first relevant document), OUT_DIR/maxp/ the same for MaxP when the embeddings have passages,
and METRICS_JSON (recall_at_k, ndcg_at_k, mrr_at_10 averaged over all evaluation queries, plus
how many queries and documents they were measured on, the query instruction used, and the precision
queries and corpus were encoded in).
The metrics are computed from the run file as written, so anyone can recompute them from it.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from zh_retrieval.embed import corpus_precision, load_corpus_embeddings, load_passage_embeddings
from zh_retrieval.encode import encode, load_embedder, with_instruction
from zh_retrieval.errors import run_stage
from zh_retrieval.files import atomic_dir, write_json
from zh_retrieval.metrics import score_run
from zh_retrieval.params import (
    EmbeddingParams,
    EncodeParams,
    EvaluateParams,
    embedding_params,
    encode_params,
    evaluate_params,
)
from zh_retrieval.prepare import check_qrels_docids, load_eval_queries, load_evidence_groups
from zh_retrieval.search import maxp_search, search

logger = logging.getLogger(__name__)


def as_run(query_ids: list[str], docids: list[str], scores: np.ndarray, rows: np.ndarray
           ) -> dict[str, dict[str, float]]:
    """Search results (row indices into docids, best first) as query_id => {docid: score}."""
    return {
        query_id: {docids[i]: float(s) for s, i in zip(scores[n], rows[n]) if i >= 0}
        for n, query_id in enumerate(query_ids)
    }


def evaluate(
    model_dir: Path,
    docids: list[str],
    corpus_vectors: np.ndarray,
    passages: tuple[np.ndarray, np.ndarray] | None,
    corpus_precision: str,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    out_dir: Path,
    embedding: EmbeddingParams,
    encoding: EncodeParams,
    params: EvaluateParams,
    tag: str,
    groups: dict[str, str] | None = None,
) -> dict[str, float | int | str]:
    """Dense retrieval over the whole corpus; returns the mean metrics and writes out_dir/run.trec.

    With passage embeddings (MaxP), the metrics also hold `maxp.*`, and out_dir/maxp/ its run.
    """
    started = time.perf_counter()
    embedder = load_embedder(model_dir, embedding.pooling, encoding.precision)
    query_ids = list(queries)
    instruction = embedding.query_instruction if params.use_query_instruction else ""
    query_vectors = encode(embedder, with_instruction([queries[q] for q in query_ids], instruction),
                           embedding.query_max_len, encoding.batch_size, desc=f"{tag}: queries")
    metrics = score_vectors(query_ids, query_vectors, docids, corpus_vectors, passages, qrels, out_dir, params, tag,
                            groups)
    # Recorded so a metrics file says how its queries and documents were embedded: `auto`
    # precision differs between machines, and so do the numbers in their fourth decimal.
    metrics.update(query_instruction=instruction, query_precision=embedder.precision,
                   corpus_precision=corpus_precision)
    logger.info("%s: %d queries, %d documents, %.1fs; ndcg_at_10 %.4f", tag, len(qrels), len(docids),
                time.perf_counter() - started, metrics.get("ndcg_at_10", float("nan")))
    return metrics


def score_vectors(query_ids: list[str], query_vectors: np.ndarray, docids: list[str], corpus_vectors: np.ndarray,
                  passages: tuple[np.ndarray, np.ndarray] | None, qrels: dict[str, dict[str, int]], out_dir: Path,
                  params: EvaluateParams, tag: str, groups: dict[str, str] | None = None) -> dict:
    """Search with encoded queries (truncated documents, and MaxP with passages) and score the runs."""
    top_k = max(params.k)
    run = as_run(query_ids, docids, *search(corpus_vectors, query_vectors, top_k))
    with atomic_dir(out_dir) as tmp:
        metrics: dict = score_run(qrels, run, params.k, tmp, tag, groups)
        if passages is not None:
            (tmp / "maxp").mkdir()
            maxp_run = as_run(query_ids, docids, *maxp_search(*passages, query_vectors, top_k))
            metrics["maxp"] = score_run(qrels, maxp_run, params.k, tmp / "maxp", f"{tag}_maxp", groups)
    metrics.update(num_queries=len(qrels), num_corpus=len(docids))
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("embeddings_dir", type=Path, help="the embed stage's output for this model")
    parser.add_argument("prepared_dir", type=Path, help="prepare's output: queries.jsonl and qrels.tsv")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--tag", help="run tag in run.trec (default: the output directory's name)")
    args = parser.parse_args()

    embedding, encoding = embedding_params(args.params), encode_params(args.params)
    params = evaluate_params(args.params)
    queries, qrels = load_eval_queries(args.prepared_dir)
    docids, corpus_vectors = load_corpus_embeddings(args.embeddings_dir)
    check_qrels_docids(qrels, set(docids), args.prepared_dir / "qrels.tsv", args.embeddings_dir)
    passages = load_passage_embeddings(args.embeddings_dir)
    metrics = evaluate(args.model_dir, docids, corpus_vectors, passages, corpus_precision(args.embeddings_dir),
                       queries, qrels, args.out_dir, embedding, encoding, params, args.tag or args.out_dir.name,
                       load_evidence_groups(args.prepared_dir))
    write_json(args.metrics, metrics)


if __name__ == "__main__":
    run_stage(main)
