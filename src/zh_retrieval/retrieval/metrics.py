"""Retrieval metrics through pytrec_eval (trec_eval's own code), as pure functions.

    qrels: {query_id: {docid: relevance}}
    run:   {query_id: {docid: score}}

Ties in score are ordered as trec_eval orders them (docid, descending), and `write_trec_run`
writes ranks in that same order, so the committed run files recompute to the same metrics.
A query with no retrieved relevant document scores 0 and still counts in every average.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytrec_eval

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]

MRR_DEPTH = 10


def ranked(scores: Mapping[str, float]) -> list[tuple[str, float]]:
    """(docid, score) best first, ties broken by docid descending, as trec_eval does."""
    return sorted(scores.items(), key=lambda item: (-item[1], _reverse_key(item[0])))


def _reverse_key(docid: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in docid) + (1,)


def per_query_metrics(qrels: Qrels, run: Run, ks: tuple[int, ...]) -> dict[str, dict[str, float]]:
    """query_id => {recall_at_k, ndcg_at_k, mrr_at_10}, for every query in qrels."""
    k_list = ",".join(str(k) for k in ks)
    evaluator = pytrec_eval.RelevanceEvaluator(
        {q: dict(d) for q, d in qrels.items()}, {f"recall.{k_list}", f"ndcg_cut.{k_list}"}
    )
    full = evaluator.evaluate({q: dict(run.get(q, {})) for q in qrels})
    # MRR@10: trec_eval's recip_rank is over the whole list, so cut each list at 10 first.
    cut = {q: dict(ranked(run.get(q, {}))[:MRR_DEPTH]) for q in qrels}
    reciprocal = pytrec_eval.RelevanceEvaluator({q: dict(d) for q, d in qrels.items()}, {"recip_rank"}).evaluate(cut)

    results: dict[str, dict[str, float]] = {}
    for query_id in qrels:
        measures = full.get(query_id, {})
        row = {}
        for k in ks:
            row[f"recall_at_{k}"] = measures.get(f"recall_{k}", 0.0)
            row[f"ndcg_at_{k}"] = measures.get(f"ndcg_cut_{k}", 0.0)
        row[f"mrr_at_{MRR_DEPTH}"] = reciprocal.get(query_id, {}).get("recip_rank", 0.0)
        results[query_id] = row
    return results


def mean_metrics(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    names = next(iter(per_query.values())).keys()
    return {name: sum(row[name] for row in per_query.values()) / len(per_query) for name in names}


def first_relevant_rank(qrels: Mapping[str, int], scores: Mapping[str, float]) -> int | None:
    """1-based rank of the first relevant document in the run, or None if none was retrieved."""
    for rank, (docid, _) in enumerate(ranked(scores), start=1):
        if qrels.get(docid, 0) > 0:
            return rank
    return None


def grouped_means(per_query: Mapping[str, Mapping[str, float]], groups: Mapping[str, str]) -> dict[str, dict]:
    """group => the metrics averaged over that group's queries, with their count under `queries`."""
    result = {}
    for group in sorted(set(groups.values())):
        rows = {q: row for q, row in per_query.items() if groups.get(q) == group}
        if rows:
            result[group] = {**mean_metrics(rows), "queries": len(rows)}
    return result


def score_run(qrels: Qrels, run: Run, ks: tuple[int, ...], out_dir: Path, tag: str,
              groups: Mapping[str, str] | None = None) -> dict:
    """Write out_dir/run.trec and out_dir/per_query.jsonl; return the metrics averaged over all qrels queries.

    The metrics are computed from run.trec as written (scores to 6 decimals), so anyone who
    recomputes them from the file gets these numbers. With `groups` (query_id => group, e.g.
    where its evidence lies), they are also averaged per group, under `by_evidence`.
    """
    write_trec_run(out_dir / "run.trec", run, tag)
    written = read_trec_run(out_dir / "run.trec")
    per_query = per_query_metrics(qrels, written, ks)
    with (out_dir / "per_query.jsonl").open("w", encoding="utf-8") as f:
        for query_id, row in per_query.items():
            record = {"query_id": query_id, **row,
                      "first_relevant_rank": first_relevant_rank(qrels[query_id], written.get(query_id, {}))}
            f.write(json.dumps(record) + "\n")
    means: dict = mean_metrics(per_query)
    if groups:
        means["by_evidence"] = grouped_means(per_query, groups)
    return means


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            query_id, _, docid, relevance = line.split()
            qrels.setdefault(query_id, {})[docid] = int(relevance)
    return qrels


def write_trec_run(path: Path, run: Run, tag: str) -> None:
    """`query_id Q0 docid rank score tag`, one line per retrieved document."""
    with path.open("w", encoding="utf-8") as f:
        for query_id in run:
            for rank, (docid, score) in enumerate(ranked(run[query_id]), start=1):
                f.write(f"{query_id} Q0 {docid} {rank} {score:.6f} {tag}\n")


def read_trec_run(path: Path) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            query_id, _, docid, _, score, _ = line.split()
            run.setdefault(query_id, {})[docid] = float(score)
    return run
