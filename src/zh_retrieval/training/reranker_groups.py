"""The reranker's training groups (`reranker.negatives`).

`mined` trains the reranker on mine's rows, the embedder's own groups: the positive passage, negatives
the base embedder ranks high and random ones. Those are not the documents `rerank` shows it: the first
stage's top `rerank.depth`, which on the demo is BM25's order (its hybrid picks BM25's order on dev).
`bm25` keeps each row's query and positive and draws the negatives at random from BM25's top
`rerank.depth` documents for the query, less its judged positives, each as the passage BM25 scores
highest for it: the passage `rerank` reads with `rerank.first_stage: bm25` (a dense or hybrid first
stage has it read the fine-tuned embedder's best passage instead, which does not exist before the
embedder is trained). Without `long_documents.maxp`, the document, which the trainer truncates. There
is no false-negative guard beyond the judged positives: MLDR judges one document per question, and
BM25's top may hold another that answers it.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

from zh_retrieval.core.errors import InputError
from zh_retrieval.core.files import read_jsonl
from zh_retrieval.core.params import Params
from zh_retrieval.mining.corpus import Passages
from zh_retrieval.mining.positives import bm25_best_passages
from zh_retrieval.retrieval.bm25 import bm25_run


def ranked_documents(run: Mapping[str, Mapping[str, float]]) -> dict[str, list[str]]:
    """query_id => its documents, best BM25 score first; ties broken by docid, the same on every run."""
    return {query_id: sorted(scored, key=lambda docid: (-scored[docid], docid)) for query_id, scored in run.items()}


def negative_pools(ranked: Mapping[str, list[str]], positives: Mapping[str, Sequence[str]],
                   depth: int) -> dict[str, list[str]]:
    """query_id => the documents of its top `depth` that are not the query's positives, in rank order."""
    return {query_id: [d for d in docids[:depth] if d not in set(positives[query_id])]
            for query_id, docids in ranked.items()}


def draw_negatives(pools: Mapping[str, list[str]], wanted: int, seed: int) -> dict[str, list[str]]:
    """`wanted` of each pool at random (all of a smaller one), in pool order; the same seed draws the same."""
    rng = random.Random(seed)
    drawn = {}
    for query_id in sorted(pools):
        pool = pools[query_id]
        chosen = set(rng.sample(range(len(pool)), min(wanted, len(pool))))
        drawn[query_id] = [docid for n, docid in enumerate(pool) if n in chosen]
    return drawn


def bm25_groups(rows: list[dict], positives: Mapping[str, Sequence[str]], corpus: Mapping[str, str],
                row_of: Mapping[str, int], passages: Passages | None, params: Params, train_file: Path
                ) -> tuple[list[dict], dict[str, float | int | str]]:
    """mine's rows (from `train_file`) with BM25 negatives in place of theirs (the fields mine writes,
    `neg_source` all "bm25"), and what was drawn: from which depth, how many negatives, their median rank
    in BM25's run. A query left with no negative stops it: FlagEmbedding's reranker dataset divides by
    the negatives' count."""
    queries = {row["query_id"]: row["query"] for row in rows}
    depth = params.rerank.depth
    ranked = ranked_documents(bm25_run(dict(corpus), queries, params.bm25, depth))  # the positives count in it
    pools = negative_pools(ranked, positives, depth)
    for query_id, pool in pools.items():
        if not pool:
            raise InputError(train_file, f"query {query_id!r} has no negative in BM25's top {depth} (only its "
                             "positives, or no word BM25 knows)", fix="raise rerank.depth, or set "
                             "reranker.negatives: mined")
    wanted = params.reranker.train_group_size - 1
    drawn = draw_negatives(pools, wanted, params.reranker.seed)
    if passages is None:
        passage_of = {(q, d): 0 for q, docids in drawn.items() for d in docids}
    else:
        passage_of = bm25_best_passages([(q, queries[q], drawn[q]) for q in sorted(drawn)], row_of, passages,
                                        params.bm25)
        passages.texts.prefetch(row_of[d] for docids in drawn.values() for d in docids)

    def text(query_id: str, docid: str) -> str:
        if passages is None:
            return corpus[docid]
        return passages.texts.of(row_of[docid])[passage_of[(query_id, docid)]]

    grouped, ranks = [], []
    for row in rows:
        query_id = row["query_id"]
        negatives = drawn[query_id]
        ranks += [ranked[query_id].index(d) + 1 for d in negatives]
        grouped.append(row | {"neg": [text(query_id, d) for d in negatives],
                              "neg_passages": [{"docid": d, "passage": passage_of[(query_id, d)]} for d in negatives],
                              "neg_source": ["bm25"] * len(negatives)})
    stats = {"negatives": "bm25", "depth": depth, "rows": len(grouped),
             "negatives_per_row": statistics.mean(len(r["neg"]) for r in grouped),
             "rows_short_of_negatives": sum(len(r["neg"]) < wanted for r in grouped),
             "median_bm25_rank": statistics.median(ranks) if ranks else 0}
    return grouped, stats


def read_rows(train_file: Path, positives: Mapping[str, Sequence[str]], train_queries: Path) -> list[dict]:
    """mine's rows, each naming a training query that has a positive, with its query text and positive."""
    rows = []
    for line, row in read_jsonl(train_file):
        for field, kind in (("query_id", str), ("query", str), ("pos", list)):
            if not isinstance(row.get(field), kind):
                raise InputError(train_file, f"missing or malformed field `{field}`", line=line)
        if not positives.get(row["query_id"]):
            raise InputError(train_file, f"query {row['query_id']!r} is not a training query with a positive in "
                             f"{train_queries}", line=line, fix="run the mine stage again on these queries")
        rows.append(row)
    if not rows:
        raise InputError(train_file, "no training rows")
    return rows
