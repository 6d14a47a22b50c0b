"""The second stage: a cross-encoder rescoring the first stage's top candidates, one passage each.

A cross-encoder reads `[CLS] query [SEP] passage [SEP]` up to `reranker.max_length` tokens, far
fewer than a long document holds. So each candidate contributes the passage the first stage found
best (`passage_choice`): for a dense or hybrid first stage with MaxP, the passage of the candidate
the fine-tuned embedder scores highest for the query (the passage MaxP ranked it by); for BM25,
the passage BM25 scores highest; without MaxP, the document truncated, as the first stage read it.
Passages are embed's (`embedding.passage_max_len` tokens, `long_documents.overlap`), cut again
with the embedder's tokenizer and checked against embed's passage count.

The reranked run holds the top `rerank.depth` candidates in the reranker's order, then the first
stage's remaining documents in their own order below them, so Recall@k past the depth is the first
stage's and every k compares like with like.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zh_retrieval.core.errors import InputError
from zh_retrieval.core.params import FirstStage
from zh_retrieval.retrieval.metrics import Run, ranked

logger = logging.getLogger(__name__)

PassageChoice = str  # "dense_best", "bm25_best" or "truncated": how each candidate's passage was picked


def first_stage_run(eval_dir: Path, split: str, first_stage: FirstStage, maxp: bool) -> Path:
    """Where the first stage's run for `split` lies under the evaluations' directory (output/eval)."""
    return {
        "hybrid_rrf": eval_dir / "hybrid" / split / "rrf",
        "hybrid_weighted": eval_dir / "hybrid" / split / "weighted",
        "dense": eval_dir / "finetuned" / split / ("maxp" if maxp else ""),
        "bm25": eval_dir / "bm25" / split,
    }[first_stage] / "run.trec"


def passage_choice(first_stage: FirstStage, maxp: bool) -> PassageChoice:
    if not maxp:
        return "truncated"
    return "bm25_best" if first_stage == "bm25" else "dense_best"


def candidates(run: Run, queries: Sequence[str], depth: int, path: Path) -> dict[str, list[str]]:
    """query_id => the first stage's top `depth` docids, best first, for every query; a query the run
    lacks, or one with fewer candidates than the depth, is named (a run of another split or a cut-off run)."""
    result = {}
    for query_id in queries:
        docids = [docid for docid, _ in ranked(run.get(query_id, {}))]
        if not docids:
            raise InputError(path, f"no candidates for query {query_id}",
                             fix="re-run the first stage's evaluation for this split")
        result[query_id] = docids
    shortest = min(len(d) for d in result.values())
    if shortest < depth and shortest < max(len(d) for d in result.values()):
        logger.warning("%s: some queries have only %d candidates, fewer than rerank.depth %d", path, shortest, depth)
    return result


def reranked_run(first_stage: Mapping[str, list[str]], scores: Mapping[str, Sequence[float]], depth: int) -> Run:
    """The top `depth` candidates by reranker score, then the first stage's rest in its order, scored below."""
    run: dict[str, dict[str, float]] = {}
    for query_id, docids in first_stage.items():
        top = dict(zip(docids[:depth], (float(s) for s in scores[query_id]), strict=True))
        floor = min(top.values())
        # Whole steps below the lowest reranked score: distinct at the run file's 6 decimals, in first-stage order.
        rest = {docid: floor - 1.0 - i for i, docid in enumerate(docids[depth:])}
        run[query_id] = top | rest
    return run


@dataclass(frozen=True)
class Pair:
    query_id: str
    docid: str
    passage: int  # the index of the candidate's passage that is scored; 0 is the truncated document


PAIRS = "pairs.tsv"


def write_pairs(path: Path, pairs: Sequence[Pair], scores: Sequence[float]) -> None:
    """`query_id docid passage score` per pair scored, in the first stage's order per query."""
    with path.open("w", encoding="utf-8") as f:
        for pair, score in zip(pairs, scores, strict=True):
            f.write(f"{pair.query_id}\t{pair.docid}\t{pair.passage}\t{score:.6f}\n")


def read_pair_passages(path: Path) -> dict[tuple[str, str], int]:
    """(query_id, docid) => the passage index the reranker read, from `write_pairs`'s file."""
    passages = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        query_id, docid, passage, _ = line.split("\t")
        passages[(query_id, docid)] = int(passage)
    return passages


def dense_best_passages(query_vectors: Mapping[str, np.ndarray], candidate_ids: Mapping[str, list[str]],
                        depth: int, row_of: Mapping[str, int], passages) -> list[Pair]:
    """Each candidate's passage the embedder scores highest for the query (the one MaxP ranked it by)."""
    return [Pair(query_id, docid, passages.best(row_of[docid], query_vectors[query_id]))
            for query_id, docids in candidate_ids.items() for docid in docids[:depth]]


def score_pairs(reranker_dir: Path, queries: Mapping[str, str], texts: Sequence[str], pairs: Sequence[Pair],
                max_length: int, query_max_len: int, batch_size: int) -> list[float]:
    """The cross-encoder's raw logit for each pair's query with its passage text."""
    texts_of = [(queries[p.query_id], text) for p, text in zip(pairs, texts, strict=True)]
    return cross_encoder_scores(reranker_dir, texts_of, max_length, query_max_len, batch_size)


def cross_encoder_scores(reranker_dir: Path, pairs: Sequence[tuple[str, str]], max_length: int, query_max_len: int,
                         batch_size: int) -> list[float]:
    """The cross-encoder's raw logit for each (query, passage), through FlagEmbedding's FlagReranker: it sorts
    the pairs by length, pads per batch, and keeps `query_max_len` tokens of the query."""
    import torch
    from FlagEmbedding import FlagReranker

    from zh_retrieval.retrieval.encode import visible_devices

    device = visible_devices()[0]
    reranker = FlagReranker(str(reranker_dir), use_fp16=device != "cpu", devices=[device], trust_remote_code=False,
                            query_max_length=query_max_len, max_length=max_length, batch_size=batch_size,
                            normalize=False)
    with torch.inference_mode():
        scores = reranker.compute_score(list(pairs))
    return [float(scores)] if isinstance(scores, (int, float)) else [float(s) for s in scores]
