"""Dense evaluation: encode the queries with a model, search its corpus embeddings, score the rankings.

The metrics are computed from the run file as written (retrieval/metrics.py), so anyone can
recompute them from it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from zh_retrieval.core.files import atomic_dir
from zh_retrieval.core.params import EmbeddingParams, EncodeParams, EvaluateParams
from zh_retrieval.retrieval.encode import Embedder, encode, with_instruction
from zh_retrieval.retrieval.matches import MATCHED, MATCHED_DEPTH, best_passages, write_matched
from zh_retrieval.retrieval.metrics import score_run
from zh_retrieval.retrieval.search import maxp_search, search

logger = logging.getLogger(__name__)


def as_run(query_ids: list[str], docids: list[str], scores: np.ndarray, rows: np.ndarray
           ) -> dict[str, dict[str, float]]:
    """Search results (row indices into docids, best first) as query_id => {docid: score}."""
    return {
        query_id: {docids[i]: float(s) for s, i in zip(scores[n], rows[n]) if i >= 0}
        for n, query_id in enumerate(query_ids)
    }


def evaluate(
    embedder: Embedder,
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

    `embedder` is loaded by the caller, once for all the splits it evaluates. With passage
    embeddings (MaxP), the metrics also hold `maxp.*`, and out_dir/maxp/ its run.
    """
    started = time.perf_counter()
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
            maxp_scores, maxp_rows = maxp_search(*passages, query_vectors, top_k)
            maxp_run = as_run(query_ids, docids, maxp_scores, maxp_rows)
            metrics["maxp"] = score_run(qrels, maxp_run, params.k, tmp / "maxp", f"{tag}_maxp", groups)
            top_rows = maxp_rows[:, :MATCHED_DEPTH]
            write_matched(tmp / "maxp" / MATCHED, query_ids, docids, top_rows,
                          best_passages(*passages, query_vectors, top_rows))
    metrics.update(num_queries=len(qrels), num_corpus=len(docids))
    return metrics
