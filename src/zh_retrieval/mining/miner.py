"""Mining end to end: every training query's positive passage and negatives, written as FlagEmbedding's rows.

train.jsonl holds, per query, `query_id`, `query`, `pos`, `neg` (FlagEmbedding's contract:
query: str, pos: List[str], neg: List[str]), plus `pos_passages` and `neg_passages` (the docid
and passage index of each text; passage 0 is the truncated document) and `neg_source` (dataset,
hard or random). Same inputs and seed give a byte-identical file.

sentence-transformers' `util.mine_hard_negatives` does the rank window and margin guard but encodes
the corpus itself, works on whole texts and has no hard/random mix; this reuses the base model's
corpus and passage embeddings (the embed stage, shared with the base evaluation).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np

from zh_retrieval.core.errors import InputError
from zh_retrieval.core.files import atomic_dir, write_jsonl
from zh_retrieval.core.params import MineParams, Params
from zh_retrieval.data.embeddings import corpus_precision, load_corpus_embeddings
from zh_retrieval.data.prepared import TrainQuery
from zh_retrieval.mining.corpus import Passages, load_passages
from zh_retrieval.mining.guard import Threshold, make_guard, random_floor
from zh_retrieval.mining.negatives import QueryNegatives
from zh_retrieval.mining.positives import BM25Choices, PassageRef, bm25_positive_passages, positive_passages
from zh_retrieval.mining.stats import MinedQuery, check_hard_coverage, mining_stats
from zh_retrieval.retrieval.encode import encode, load_embedder, with_instruction

logger = logging.getLogger(__name__)


def mine(
    queries: list[TrainQuery],
    docids: list[str],
    corpus_vectors: np.ndarray,
    query_vectors: np.ndarray,
    documents: list[str],
    params: MineParams,
    passages: Passages | None = None,
    bm25_choices: BM25Choices | None = None,
) -> list[MinedQuery]:
    """Positives and negatives for every query; `documents[i]` and `corpus_vectors[i]` belong to `docids[i]`.

    `passages` is needed when any of `params.positive`, `guard`, `negative_text` is a passage
    choice; `bm25_choices` when the positive is bm25_passage.
    """
    if params.needs_passages and passages is None:
        raise ValueError(f"mine.positive {params.positive!r}, guard {params.guard!r}, negative_text "
                         f"{params.negative_text!r} need the passage embeddings")
    n_docs = len(docids)
    row_of = {d: i for i, d in enumerate(docids)}
    guard = make_guard(params.guard, params, corpus_vectors, passages)
    scores, rows = guard.rank(query_vectors, guard.search_depth(n_docs))
    floor = random_floor(n_docs, params)
    rng = random.Random(params.seed)
    results = []
    for qi, query in enumerate(queries):
        query_vector = query_vectors[qi]
        positive_rows = [row_of[d] for d in query.positive_ids]
        positives = positive_passages(query, row_of, params.positive, query_vector, passages, bm25_choices)
        if params.guard_reference == "trained_positive":
            positive_score = max(trained_score(ref, row_of, corpus_vectors, passages, query_vector)
                                 for ref in positives)
        else:
            positive_score = max(guard.score(r, query_vector) for r in positive_rows)
        threshold = Threshold.for_positive(positive_score, params.false_negative_margin,
                                           frozenset(documents[r] for r in positive_rows))
        picked = QueryNegatives(rng, params, docids, documents, query_vector, passages, set(positive_rows))
        total = params.negatives_per_query
        dataset_wanted = round(params.dataset_negative_share * total)
        picked.add_dataset([row_of[d] for d in query.negative_ids] if dataset_wanted else [], dataset_wanted,
                           guard, threshold)
        hard_wanted = round(params.hard_ratio * (total - len(picked.negatives)))
        picked.add_hard(scores[qi], rows[qi], hard_wanted, guard, threshold)
        picked.add_random(rows[qi, :floor], total - len(picked.negatives))
        if not picked.negatives:
            raise InputError("corpus", f"query {query.query_id!r} has no document left to use as a negative",
                             fix="the corpus needs documents besides each query's positives")
        results.append(MinedQuery(query, positives, picked.negatives, picked.skipped_false_negatives,
                                  picked.skipped_dataset_negatives, hard_wanted))
    return results


def trained_score(ref: PassageRef, row_of: dict[str, int], corpus_vectors: np.ndarray, passages: Passages | None,
                  query_vector: np.ndarray) -> float:
    """The base model's score of the text written as `pos`: passage 0 is the truncated document."""
    row = row_of[ref.docid]
    if ref.passage == 0:
        return float(corpus_vectors[row] @ query_vector)
    return float(passages.scores(row, query_vector)[ref.passage])


def training_rows(mined: list[MinedQuery], corpus: dict[str, str], passages: Passages | None,
                  row_of: dict[str, int]) -> list[dict]:
    """FlagEmbedding's training rows, plus where every text came from."""

    def text(docid: str, passage: int) -> str:
        # Passage 0 of a document is written as the whole document: the trainer truncates it to the same text.
        return corpus[docid] if passage == 0 else passages.texts.of(row_of[docid])[passage]

    if passages is not None:
        passages.texts.prefetch(row_of[ref.docid] for m in mined for ref in [*m.positives, *m.negatives]
                                if ref.passage > 0)
    return [
        {
            "query_id": m.query.query_id,
            "query": m.query.query,
            "pos": [text(p.docid, p.passage) for p in m.positives],
            "neg": [text(n.docid, n.passage) for n in m.negatives],
            "pos_passages": [{"docid": p.docid, "passage": p.passage} for p in m.positives],
            "neg_passages": [{"docid": n.docid, "passage": n.passage} for n in m.negatives],
            "neg_source": [n.source for n in m.negatives],
        }
        for m in mined
    ]


def mine_with_vectors(tokenizer_dir: Path, embeddings_dir: Path, corpus: dict[str, str], queries: list[TrainQuery],
                      query_vectors: np.ndarray, out_dir: Path, params: Params, cut_dir: Path | None = None
                      ) -> dict[str, float | int | None | dict[str, int]]:
    """Everything of mining after the queries are encoded: positives, negatives, OUT_DIR/train.jsonl, the stats."""
    docids, corpus_vectors = load_corpus_embeddings(embeddings_dir)
    if set(docids) != set(corpus):
        raise InputError(embeddings_dir, "the embeddings are of another corpus than the dataset's",
                         fix="re-run the embed stage")
    documents = [corpus[d] for d in docids]
    mining = params.mine
    passages = (load_passages(tokenizer_dir, embeddings_dir, documents, params.embedding, params.long_documents,
                              cut_dir) if mining.needs_passages else None)
    row_of = {d: i for i, d in enumerate(docids)}
    bm25_choices = (bm25_positive_passages(queries, row_of, passages, params.bm25)
                    if mining.positive == "bm25_passage" else None)
    mined = mine(queries, docids, corpus_vectors, query_vectors, documents, mining, passages, bm25_choices)
    check_hard_coverage(mined, mining, params.path)
    rows = training_rows(mined, corpus, passages, row_of)
    with atomic_dir(out_dir) as tmp:
        write_jsonl(tmp / "train.jsonl", rows)
    return mining_stats(mined)


def run_mining(model_dir: Path, embeddings_dir: Path, corpus: dict[str, str], queries: list[TrainQuery],
               out_dir: Path, params: Params, cut_dir: Path | None = None) -> dict[str, float | int | str]:
    """Encode the queries with the base model (with the query instruction, as training sees them), then mine."""
    embedder = load_embedder(model_dir, params.embedding.pooling, params.encode.precision)
    query_vectors = encode(embedder, with_instruction([q.query for q in queries], params.embedding.query_instruction),
                           params.embedding.query_max_len, params.encode.batch_size, desc="mine: queries")
    stats = mine_with_vectors(model_dir, embeddings_dir, corpus, queries, query_vectors, out_dir, params, cut_dir)
    stats = {**stats, "query_precision": embedder.precision, "corpus_precision": corpus_precision(embeddings_dir)}
    logger.info("mined %s: %s", out_dir, ", ".join(f"{k} {v}" for k, v in stats.items()))
    return stats
