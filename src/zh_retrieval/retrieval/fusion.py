"""Fusing a BM25 run with a dense run, two ways; each fused run is scored like any other.

- reciprocal rank fusion (RRF): score(d) = sum over runs of weight / (rrf_k + rank(d)), no score scales involved;
- weighted score fusion: w * dense + (1 - w) * bm25, each run's scores min-max normalised per query.
A document missing from one run's top list gets nothing from that run. A dense weight of 0 keeps
BM25's order and 1 the dense run's, so a grid holding both ends can fall back to the better part
(min-max puts a run's last document at 0, level with the documents only the other run found, so
the last places of a top list may differ from that run's).
"""

from __future__ import annotations

from collections.abc import Mapping

from zh_retrieval.retrieval.metrics import Run, ranked


def reciprocal_rank_fusion(runs: list[Run], rrf_k: int, weights: list[float] | None = None
                           ) -> dict[str, dict[str, float]]:
    fused: dict[str, dict[str, float]] = {}
    for run, weight in zip(runs, weights or [1.0] * len(runs), strict=True):
        for query_id, scores in run.items():
            target = fused.setdefault(query_id, {})
            for rank, (docid, _) in enumerate(ranked(scores), start=1):
                target[docid] = target.get(docid, 0.0) + weight / (rrf_k + rank)
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
