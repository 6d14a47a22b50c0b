"""evaluate: embed the evaluation queries with one model, search its corpus embeddings, score the ranking.

    python -m zh_retrieval.evaluate MODEL_DIR EMBEDDINGS_DIR PREPARED_DIR OUT_DIR METRICS_JSON --params params.yaml

EMBEDDINGS_DIR is the embed stage's output for the same model (the whole corpus, encoded once).

Writes OUT_DIR/run.trec (`query_id Q0 docid rank score tag`, the top max(k) documents of the
whole corpus for every query) and METRICS_JSON (recall_at_k, ndcg_at_k, mrr_at_10 averaged
over all evaluation queries, plus how many queries and documents they were measured on).
The metrics are computed from the run file as written, so anyone can recompute them from it.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from zh_retrieval.embed import load_corpus_embeddings
from zh_retrieval.encode import encode, load_embedder, with_instruction
from zh_retrieval.errors import InputError, run_stage
from zh_retrieval.files import atomic_dir, read_jsonl, write_json
from zh_retrieval.metrics import mean_metrics, per_query_metrics, read_qrels, read_trec_run, write_trec_run
from zh_retrieval.params import EmbeddingParams, EncodeParams, EvaluateParams, embedding_params, encode_params, evaluate_params
from zh_retrieval.search import search

logger = logging.getLogger(__name__)


def load_eval_queries(prepared_dir: Path) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """(query_id => query text, qrels) as prepare wrote them."""
    queries = {row["query_id"]: row["query"] for _, row in read_jsonl(prepared_dir / "queries.jsonl")}
    qrels_path = prepared_dir / "qrels.tsv"
    if not qrels_path.is_file():
        raise InputError(qrels_path, "file not found", fix="run the prepare stage first")
    qrels = read_qrels(qrels_path)
    missing = set(qrels) - set(queries)
    if missing:
        raise InputError(qrels_path, f"{len(missing)} query ids have no query text, e.g. {sorted(missing)[0]!r}")
    return queries, qrels


def evaluate(
    model_dir: Path,
    docids: list[str],
    corpus_vectors: np.ndarray,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    out_dir: Path,
    embedding: EmbeddingParams,
    encoding: EncodeParams,
    params: EvaluateParams,
    tag: str,
) -> dict[str, float]:
    """Dense retrieval over the whole corpus; returns the mean metrics and writes out_dir/run.trec."""
    started = time.perf_counter()
    embedder = load_embedder(model_dir, embedding.pooling, encoding.precision)
    query_ids = list(queries)
    query_vectors = encode(embedder, with_instruction([queries[q] for q in query_ids], embedding.query_instruction),
                           embedding.query_max_len, encoding.batch_size, desc=f"{tag}: queries")
    scores, indices = search(corpus_vectors, query_vectors, max(params.k))
    run = {
        query_id: {docids[i]: float(s) for s, i in zip(scores[row], indices[row]) if i >= 0}
        for row, query_id in enumerate(query_ids)
    }
    with atomic_dir(out_dir) as tmp:
        write_trec_run(tmp / "run.trec", run, tag)
        # Score the run as written (6 decimals), so recomputing from the file gives these numbers.
        metrics = mean_metrics(per_query_metrics(qrels, read_trec_run(tmp / "run.trec"), params.k))
    metrics.update(num_queries=len(qrels), num_corpus=len(docids))
    logger.info("%s: %d queries, %d documents, %.1fs; ndcg_at_10 %.4f", tag, len(qrels), len(docids),
                time.perf_counter() - started, metrics.get("ndcg_at_10", float("nan")))
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

    embedding, encoding, params = embedding_params(args.params), encode_params(args.params), evaluate_params(args.params)
    queries, qrels = load_eval_queries(args.prepared_dir)
    docids, corpus_vectors = load_corpus_embeddings(args.embeddings_dir)
    unknown = {d for docs in qrels.values() for d in docs} - set(docids)
    if unknown:
        raise InputError(args.prepared_dir / "qrels.tsv", f"{len(unknown)} relevant docids are not among the "
                         f"embedded documents of {args.embeddings_dir}, e.g. {sorted(unknown)[0]!r}",
                         fix="re-run prepare and embed on the same dataset")
    metrics = evaluate(args.model_dir, docids, corpus_vectors, queries, qrels, args.out_dir, embedding, encoding, params,
                       args.tag or args.out_dir.name)
    write_json(args.metrics, metrics)


if __name__ == "__main__":
    run_stage(main)
