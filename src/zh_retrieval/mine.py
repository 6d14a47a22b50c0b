"""mine: give every training query negatives mined with the base model, mixed with random ones.

    python -m zh_retrieval.mine BASE_MODEL_DIR EMBEDDINGS_DIR DATASET_DIR TRAIN_QUERIES OUT_DIR \
        --params params.yaml --stats metrics/mine.json

Per query, `negatives_per_query` negatives (default `finetune.train_group_size - 1`):
  1. the dataset's own `negative_passages`, first, when `use_dataset_negatives` is on;
  2. of the rest, a `hard_ratio` share of **hard** negatives, drawn uniformly from the documents the
     base model ranks `hard_rank_min`..`hard_rank_max` (1-based) for the query, positives excluded;
  3. the remainder **random**: drawn uniformly from beyond rank `random_rank_min`, or, when the
     corpus is not that large, from outside the hard window.
Hard negatives teach the fine distinctions; random ones keep easy documents scoring low, which
hard negatives alone do not (the score floor drifts).

False-negative guard: a candidate whose text equals a positive's, or (unless `false_negative_margin`
is null) that scores above `(1 - false_negative_margin)` times the best positive's score, is probably
an unlabelled positive and is not used (NV-Retriever's "95% of the positive" rule at 0.05). When too
few hard candidates survive, random ones fill the gap; the stats say how often.

Writes OUT_DIR/train.jsonl (`query_id`, `query`, `pos`, `neg`, and `neg_source` per negative) and
the counts to the stats file. Same inputs and seed give a byte-identical file.

sentence-transformers' `util.mine_hard_negatives` does the rank window and margin guard but encodes
the corpus itself and has no hard/random mix; this stage reuses the base model's corpus embeddings
(the embed stage, shared with the base evaluation) and adds the mix.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zh_retrieval.embed import corpus_precision, load_corpus_embeddings
from zh_retrieval.encode import encode, load_embedder, with_instruction
from zh_retrieval.errors import InputError, run_stage
from zh_retrieval.files import atomic_dir, read_jsonl, write_json, write_jsonl
from zh_retrieval.mldr import load_corpus
from zh_retrieval.params import EmbeddingParams, EncodeParams, MineParams, embedding_params, encode_params, mine_params
from zh_retrieval.search import search

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainQuery:
    query_id: str
    query: str
    positive_ids: tuple[str, ...]
    negative_ids: tuple[str, ...]  # the dataset's own


@dataclass
class Mined:
    query: TrainQuery
    negatives: list[tuple[str, str]] = field(default_factory=list)  # (docid, "dataset" | "hard" | "random")
    hard_ranks: list[int] = field(default_factory=list)
    skipped_false_negatives: int = 0
    hard_shortfall: int = 0  # hard negatives wanted but not found, replaced by random ones


def read_train_queries(path: Path) -> list[TrainQuery]:
    return [
        TrainQuery(row["query_id"], row["query"], tuple(row["positive_ids"]), tuple(row["negative_ids"]))
        for _, row in read_jsonl(path)
    ]


def mine(
    queries: list[TrainQuery],
    docids: list[str],
    corpus_vectors: np.ndarray,
    query_vectors: np.ndarray,
    texts: list[str],
    params: MineParams,
) -> list[Mined]:
    """Negatives for every query; `texts[i]` and `corpus_vectors[i]` belong to `docids[i]`."""
    n_docs = len(docids)
    row_of = {d: i for i, d in enumerate(docids)}
    # Everything ranked above the random pool is searched: the hard window, and the ranks
    # random negatives must stay clear of.
    random_floor = params.random_rank_min if n_docs > params.random_rank_min else params.hard_rank_max
    depth = min(n_docs, max(params.hard_rank_max, random_floor))
    scores, rows = search(corpus_vectors, query_vectors, depth)
    rng = random.Random(params.seed)
    results = []
    for qi, query in enumerate(queries):
        positives = {row_of[d] for d in query.positive_ids}
        positive_texts = {texts[r] for r in positives}
        positive_score = float(max(corpus_vectors[r] @ query_vectors[qi] for r in positives))
        threshold = (float("inf") if params.false_negative_margin is None
                     else positive_score - params.false_negative_margin * abs(positive_score))
        mined = Mined(query)
        chosen: set[int] = set(positives)

        total = params.negatives_per_query
        if params.use_dataset_negatives:
            for d in query.negative_ids[:total]:
                mined.negatives.append((d, "dataset"))
                chosen.add(row_of[d])
        remaining = total - len(mined.negatives)
        hard_wanted = round(params.hard_ratio * remaining)

        candidates: list[tuple[int, int]] = []  # (row, 1-based rank)
        for rank0 in range(params.hard_rank_min - 1, min(params.hard_rank_max, depth)):
            row = int(rows[qi, rank0])
            if row < 0 or row in chosen:
                continue
            if scores[qi, rank0] > threshold or texts[row] in positive_texts:
                mined.skipped_false_negatives += 1
                continue
            candidates.append((row, rank0 + 1))
        for row, rank in sorted(rng.sample(candidates, min(hard_wanted, len(candidates))), key=lambda c: c[1]):
            mined.negatives.append((docids[row], "hard"))
            mined.hard_ranks.append(rank)
            chosen.add(row)
        mined.hard_shortfall = hard_wanted - len(mined.hard_ranks)

        above_floor = {int(r) for r in rows[qi, :random_floor] if r >= 0}
        random_wanted = total - len(mined.negatives)
        pool_size = n_docs - len(chosen | above_floor)
        avoid = chosen | above_floor if pool_size >= random_wanted else chosen
        random_wanted = min(random_wanted, n_docs - len(avoid))
        while random_wanted > 0:
            row = rng.randrange(n_docs)
            if row not in avoid:
                mined.negatives.append((docids[row], "random"))
                avoid.add(row)
                chosen.add(row)
                random_wanted -= 1
        if not mined.negatives:
            raise InputError("corpus", f"query {query.query_id!r} has no document left to use as a negative",
                             fix="the corpus needs documents besides each query's positives")
        results.append(mined)
    return results


def check_corpus_size(corpus: dict[str, str], queries: list[TrainQuery], params: MineParams, params_file: Path) -> None:
    """Fail before any encoding if some query cannot get its negatives: FlagEmbedding would repeat them."""
    most_positives = max(len(q.positive_ids) for q in queries)
    available = len(corpus) - most_positives
    if params.negatives_per_query > available:
        raise InputError(params_file, f"{params.negatives_per_query} negatives per query (finetune.train_group_size "
                         f"- 1, or mine.negatives_per_query) but the corpus has only {available} documents besides "
                         f"a query's positives", fix="lower finetune.train_group_size or use a larger corpus")


def mining_stats(mined: list[Mined]) -> dict[str, float | int | None]:
    counts = {source: sum(1 for m in mined for _, s in m.negatives if s == source)
              for source in ("dataset", "hard", "random")}
    ranks = sorted(r for m in mined for r in m.hard_ranks)
    quartiles = statistics.quantiles(ranks, n=4, method="inclusive") if len(ranks) > 1 else [None] * 3
    mixed = counts["hard"] + counts["random"]
    return {
        "queries": len(mined),
        "negatives_per_query": sum(len(m.negatives) for m in mined) / len(mined),
        "hard_negatives": counts["hard"],
        "random_negatives": counts["random"],
        "dataset_negatives": counts["dataset"],
        "hard_ratio_realised": counts["hard"] / mixed if mixed else 0.0,
        "hard_shortfall": sum(m.hard_shortfall for m in mined),
        "skipped_false_negatives": sum(m.skipped_false_negatives for m in mined),
        "hard_rank_q1": quartiles[0],
        "hard_rank_median": quartiles[1],
        "hard_rank_q3": quartiles[2],
    }


def run_mining(model_dir: Path, embeddings_dir: Path, corpus: dict[str, str], queries: list[TrainQuery],
               out_dir: Path, embedding: EmbeddingParams, encoding: EncodeParams, params: MineParams
               ) -> dict[str, float | int | str]:
    docids, corpus_vectors = load_corpus_embeddings(embeddings_dir)
    if set(docids) != set(corpus):
        raise InputError(embeddings_dir, "the embeddings are of another corpus than the dataset's",
                         fix="re-run the embed stage")
    embedder = load_embedder(model_dir, embedding.pooling, encoding.precision)
    query_vectors = encode(embedder, with_instruction([q.query for q in queries], embedding.query_instruction),
                           embedding.query_max_len, encoding.batch_size, desc="mine: queries")
    mined = mine(queries, docids, corpus_vectors, query_vectors, [corpus[d] for d in docids], params)
    with atomic_dir(out_dir) as tmp:
        write_jsonl(tmp / "train.jsonl", [
            {
                "query_id": m.query.query_id,
                "query": m.query.query,
                "pos": [corpus[d] for d in m.query.positive_ids],
                "neg": [corpus[d] for d, _ in m.negatives],
                "neg_source": [s for _, s in m.negatives],
            }
            for m in mined
        ])
    stats = {**mining_stats(mined), "query_precision": embedder.precision,
             "corpus_precision": corpus_precision(embeddings_dir)}
    logger.info("mined %s: %s", out_dir, ", ".join(f"{k} {v}" for k, v in stats.items()))
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path, help="the base model (queries are encoded with it)")
    parser.add_argument("embeddings_dir", type=Path, help="the embed stage's output for the base model")
    parser.add_argument("dataset_dir", type=Path)
    parser.add_argument("train_queries", type=Path, help="prepare's train_queries.jsonl")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--stats", type=Path)
    args = parser.parse_args()
    embedding, encoding, params = embedding_params(args.params), encode_params(args.params), mine_params(args.params)
    queries = read_train_queries(args.train_queries)
    corpus = load_corpus(args.dataset_dir)
    check_corpus_size(corpus, queries, params, args.params)
    stats = run_mining(args.model_dir, args.embeddings_dir, corpus, queries, args.out_dir, embedding, encoding, params)
    if args.stats:
        write_json(args.stats, stats)


if __name__ == "__main__":
    run_stage(main)
