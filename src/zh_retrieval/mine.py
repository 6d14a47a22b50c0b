"""mine: give every training query a positive passage and negatives mined with the base model, mixed with random ones.

    python -m zh_retrieval.mine BASE_MODEL_DIR EMBEDDINGS_DIR DATASET_DIR TRAIN_QUERIES OUT_DIR \
        --params params.yaml --stats metrics/mine.json

The positive (`mine.positive`): `best_passage`, the passage of the positive document that the base
model scores highest for the query (passages as embed cut them for MaxP, from its passage
embeddings); `bm25_passage`, the passage BM25 scores highest (the `bm25` params; IDF over the
positive documents' passages); or `first_passage`, the document as the trainer truncates it. An
MLDR question may be about any part of a 4,000-character document; its first 512 tokens often do
not hold the answer.

Per query, `negatives_per_query` negatives (default `finetune.train_group_size - 1`):
  1. a `dataset_negative_share` of them from the dataset's own `negative_passages`, sampled with
     the seed and guarded like mined ones;
  2. of the rest, a `hard_ratio` share of **hard** negatives, drawn uniformly from a window of the
     base model's ranking for the query (below);
  3. the remainder **random**: drawn uniformly from beyond rank `random_rank_min`, or, when the
     corpus is not that large, from outside the hard window.
Hard negatives teach the fine distinctions; random ones keep easy documents scoring low, which
hard negatives alone do not (the score floor drifts).

False-negative guard: a candidate whose text equals a positive's, or (unless `false_negative_margin`
is null) that scores above `(1 - false_negative_margin)` times the positive's score, is probably an
unlabelled positive and is not used (NV-Retriever's "95% of the positive" rule at 0.05).
`mine.guard` says which scores and which window:
  - `best_passage`: documents ranked by their best passage (MaxP), compared with the positive's
    best passage; hard negatives come from the first `hard_rank_max - hard_rank_min + 1` candidates
    that pass, from rank `hard_rank_min` on (NV-Retriever's TopK-PercPos);
  - `document`: truncated documents, compared with the positive's truncated score; hard negatives
    from those that pass within ranks `hard_rank_min`..`hard_rank_max`. When the base model ranks
    the positive low, every candidate above it is skipped and the query gets no hard negative.
When too few hard candidates survive, random ones fill the gap; mine.json gives the distribution of
hard negatives per query, and the stage stops when more than `max_share_without_hard` of the
queries got none. `negative_text` says whether a negative contributes its best passage for the
query (a random one: a random passage) or its truncated document.

Writes OUT_DIR/train.jsonl (`query_id`, `query`, `pos`, `neg`; `pos_passages` and `neg_passages`,
the docid and passage index of each text, passage 0 for a truncated document; `neg_source` per
negative) and the counts to the stats file. Same inputs and seed give a byte-identical file.

sentence-transformers' `util.mine_hard_negatives` does the rank window and margin guard but encodes
the corpus itself, works on whole texts and has no hard/random mix; this stage reuses the base
model's corpus and passage embeddings (the embed stage, shared with the base evaluation).
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

from zh_retrieval.bm25 import TOKENIZERS, bm25_index
from zh_retrieval.embed import corpus_precision, load_corpus_embeddings, load_passage_embeddings
from zh_retrieval.encode import encode, load_embedder, with_instruction
from zh_retrieval.errors import InputError, run_stage
from zh_retrieval.files import atomic_dir, read_jsonl, write_json, write_jsonl
from zh_retrieval.mldr import load_corpus
from zh_retrieval.params import (
    BM25Params,
    EmbeddingParams,
    EncodeParams,
    LongDocumentParams,
    MineParams,
    bm25_params,
    embedding_params,
    encode_params,
    long_document_params,
    mine_params,
)
from zh_retrieval.passages import split_many
from zh_retrieval.search import maxp_search, search

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainQuery:
    query_id: str
    query: str
    positive_ids: tuple[str, ...]
    negative_ids: tuple[str, ...]  # the dataset's own


@dataclass(frozen=True)
class Passages:
    """Every document's passages as embed cut and encoded them for MaxP."""

    vectors: np.ndarray  # one unit vector per passage
    doc_start: np.ndarray  # passage rows of document row r: doc_start[r] .. doc_start[r + 1] - 1
    texts: Callable[[int], list[str]]  # document row => its passages' texts
    # Cut these documents' passages ahead, in batches (faster than one by one); texts() then finds them.
    prefetch: Callable[[Iterable[int]], None] = lambda rows: None

    def count(self, row: int) -> int:
        return int(self.doc_start[row + 1] - self.doc_start[row])

    def scores(self, row: int, query_vector: np.ndarray) -> np.ndarray:
        return self.vectors[self.doc_start[row] : self.doc_start[row + 1]] @ query_vector


@dataclass
class Mined:
    query: TrainQuery
    positives: list[tuple[str, int]] = field(default_factory=list)  # (docid, passage index)
    negatives: list[tuple[str, str]] = field(default_factory=list)  # (docid, "dataset" | "hard" | "random")
    negative_passages: list[int] = field(default_factory=list)  # passage index of each negative's text
    hard_ranks: list[int] = field(default_factory=list)
    skipped_false_negatives: int = 0
    skipped_dataset_negatives: int = 0  # of those skipped, the dataset's own
    hard_wanted: int = 0
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
    passages: Passages | None = None,
    chosen_passages: dict[tuple[str, str], int] | None = None,
) -> list[Mined]:
    """Positives and negatives for every query; `texts[i]` and `corpus_vectors[i]` belong to `docids[i]`.

    `passages` is needed when any of `params.positive`, `guard`, `negative_text` is a passage
    choice; `chosen_passages` ((query_id, docid) => passage index) when the positive is bm25_passage.
    """
    if params.needs_passages and passages is None:
        raise ValueError(f"mine.positive {params.positive!r}, guard {params.guard!r}, negative_text "
                         f"{params.negative_text!r} need the passage embeddings")
    n_docs = len(docids)
    row_of = {d: i for i, d in enumerate(docids)}
    by_passage = params.guard == "best_passage"
    # Everything ranked above the random pool is searched: the hard window (which, over survivors,
    # may reach further down), and the ranks random negatives must stay clear of.
    random_floor = params.random_rank_min if n_docs > params.random_rank_min else params.hard_rank_max
    depth = min(n_docs, max(params.hard_rank_max, random_floor))
    if by_passage:
        depth = min(n_docs, max(params.hard_rank_max, params.random_rank_min))
        scores, rows = maxp_search(passages.vectors, np.repeat(np.arange(n_docs), np.diff(passages.doc_start)),
                                   query_vectors, depth)
    else:
        scores, rows = search(corpus_vectors, query_vectors, depth)
    window = params.hard_rank_max - params.hard_rank_min + 1
    rng = random.Random(params.seed)
    results = []
    for qi, query in enumerate(queries):
        q = query_vectors[qi]
        positives = [row_of[d] for d in query.positive_ids]
        positive_texts = {texts[r] for r in positives}
        mined = Mined(query)

        def guard_score(row: int) -> float:
            return float(passages.scores(row, q).max()) if by_passage else float(corpus_vectors[row] @ q)

        def text_passage(row: int, best: bool) -> int:
            return int(np.argmax(passages.scores(row, q))) if best else 0

        mined.positives = [(docids[r], chosen_passages[(query.query_id, docids[r])] if chosen_passages is not None
                            else text_passage(r, params.positive == "best_passage")) for r in positives]
        positive_score = max(guard_score(r) for r in positives)
        threshold = (float("inf") if params.false_negative_margin is None
                     else positive_score - params.false_negative_margin * abs(positive_score))

        def likely_positive(row: int, score: float) -> bool:
            return score > threshold or texts[row] in positive_texts

        def add(row: int, source: str) -> None:
            mined.negatives.append((docids[row], source))
            if params.negative_text == "document":
                mined.negative_passages.append(0)
            elif source == "random":
                mined.negative_passages.append(rng.randrange(passages.count(row)))
            else:
                mined.negative_passages.append(text_passage(row, True))
            chosen.add(row)

        chosen: set[int] = set(positives)
        total = params.negatives_per_query
        dataset_wanted = round(params.dataset_negative_share * total)
        if dataset_wanted:
            survivors = []
            for d in query.negative_ids:
                row = row_of[d]
                if row in chosen:
                    continue
                if likely_positive(row, guard_score(row)):
                    mined.skipped_false_negatives += 1
                    mined.skipped_dataset_negatives += 1
                else:
                    survivors.append(row)
            for row in rng.sample(survivors, min(dataset_wanted, len(survivors))):
                add(row, "dataset")
        remaining = total - len(mined.negatives)
        mined.hard_wanted = round(params.hard_ratio * remaining)

        candidates: list[tuple[int, int]] = []  # (row, 1-based rank)
        last_rank = depth if by_passage else min(params.hard_rank_max, depth)
        for rank0 in range(params.hard_rank_min - 1, last_rank):
            row = int(rows[qi, rank0])
            if row < 0 or row in chosen:
                continue
            if likely_positive(row, float(scores[qi, rank0])):
                mined.skipped_false_negatives += 1
                continue
            candidates.append((row, rank0 + 1))
            if by_passage and len(candidates) == window:
                break
        for row, rank in sorted(rng.sample(candidates, min(mined.hard_wanted, len(candidates))), key=lambda c: c[1]):
            add(row, "hard")
            mined.hard_ranks.append(rank)
        mined.hard_shortfall = mined.hard_wanted - len(mined.hard_ranks)

        above_floor = {int(r) for r in rows[qi, :random_floor] if r >= 0}
        random_wanted = total - len(mined.negatives)
        pool_size = n_docs - len(chosen | above_floor)
        avoid = chosen | above_floor if pool_size >= random_wanted else set(chosen)
        random_wanted = min(random_wanted, n_docs - len(avoid))
        while random_wanted > 0:
            row = rng.randrange(n_docs)
            if row not in avoid:
                add(row, "random")
                avoid.add(row)
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


def mining_stats(mined: list[Mined]) -> dict[str, float | int | None | dict[str, int]]:
    counts = {source: sum(1 for m in mined for _, s in m.negatives if s == source)
              for source in ("dataset", "hard", "random")}
    ranks = sorted(r for m in mined for r in m.hard_ranks)
    quartiles = statistics.quantiles(ranks, n=4, method="inclusive") if len(ranks) > 1 else [None] * 3
    mixed = counts["hard"] + counts["random"]
    wanting = [m for m in mined if m.hard_wanted]
    per_query = Counter(len(m.hard_ranks) for m in wanting)
    return {
        "queries": len(mined),
        "negatives_per_query": sum(len(m.negatives) for m in mined) / len(mined),
        "hard_negatives": counts["hard"],
        "random_negatives": counts["random"],
        "dataset_negatives": counts["dataset"],
        "hard_ratio_realised": counts["hard"] / mixed if mixed else 0.0,
        "hard_shortfall": sum(m.hard_shortfall for m in mined),
        # queries (of those meant to get any) by how many hard negatives they got: "0" is the silent failure
        "hard_negatives_per_query": {str(n): per_query[n] for n in sorted(per_query)},
        "queries_without_hard": per_query[0],
        "skipped_false_negatives": sum(m.skipped_false_negatives for m in mined),
        "skipped_dataset_negatives": sum(m.skipped_dataset_negatives for m in mined),
        "positives_past_first_passage": sum(1 for m in mined for _, index in m.positives if index > 0),
        "hard_rank_q1": quartiles[0],
        "hard_rank_median": quartiles[1],
        "hard_rank_q3": quartiles[2],
    }


def check_hard_coverage(mined: list[Mined], params: MineParams, params_file: Path) -> None:
    """Stop when the guard left too many queries without a hard negative: random ones would silently replace them."""
    wanting = [m for m in mined if m.hard_wanted]
    without = sum(1 for m in wanting if not m.hard_ranks)
    if wanting and without / len(wanting) > params.max_share_without_hard:
        share = without / len(wanting)
        raise InputError(params_file, f"{without:,} of {len(wanting):,} training queries ({share:.0%}) got no hard "
                         f"negative, more than mine.max_share_without_hard "
                         f"({params.max_share_without_hard:.0%}): the false-negative guard skipped every candidate "
                         f"in their window (mine.guard: {params.guard}, false_negative_margin: "
                         f"{params.false_negative_margin})",
                         fix="use mine.guard: best_passage, a smaller false_negative_margin (or null), or raise "
                         "mine.max_share_without_hard to accept it")


def passage_texts(tokenizer, corpus_texts: list[str], long_documents: LongDocumentParams, passage_max_len: int,
                  passage_counts: np.ndarray, embeddings_dir: Path
                  ) -> tuple[Callable[[int], list[str]], Callable[[Iterable[int]], None]]:
    """(document row => its passages, cut as embed cut them: same tokenizer, length and overlap; prefetch).

    Passages are cut on demand and kept; `prefetch(rows)` cuts many documents in batches first.
    """
    cache: dict[int, list[str]] = {}

    def prefetch(rows: Iterable[int]) -> None:
        missing = sorted(set(rows) - cache.keys())
        cuts = split_many(tokenizer, [corpus_texts[row] for row in missing], passage_max_len, long_documents.overlap)
        for row, cut in zip(missing, cuts):
            if len(cut) != passage_counts[row]:
                raise InputError(embeddings_dir, f"document row {row} has {passage_counts[row]} passage embeddings "
                                 f"but splits into {len(cut)} passages with these params",
                                 fix="re-run the embed stage with the same model and long_documents params")
            cache[row] = cut

    def texts(row: int) -> list[str]:
        if row not in cache:
            prefetch([row])
        return cache[row]

    return texts, prefetch


def load_passages(model_dir: Path, embeddings_dir: Path, corpus_texts: list[str], embedding: EmbeddingParams,
                  long_documents: LongDocumentParams) -> Passages:
    loaded = load_passage_embeddings(embeddings_dir)
    if loaded is None:
        raise InputError(embeddings_dir, "no passage embeddings (passages.npy), which passage mining needs",
                         fix="set long_documents.maxp: true and re-run the embed stage")
    vectors, passage_doc = loaded
    counts = np.bincount(passage_doc, minlength=len(corpus_texts))
    doc_start = np.concatenate([[0], np.cumsum(counts)])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return Passages(vectors, doc_start, *passage_texts(tokenizer, corpus_texts, long_documents,
                                                      embedding.passage_max_len, counts, embeddings_dir))


def bm25_positive_passages(queries: list[TrainQuery], row_of: dict[str, int], passages: Passages,
                           params: BM25Params) -> dict[tuple[str, str], int]:
    """(query_id, positive docid) => the passage of that document BM25 scores highest for the query.

    One index over the positive documents' passages, so IDF comes from passages like these; a query
    with no word left after tokenizing keeps passage 0.
    """
    tokenize = TOKENIZERS[params.tokenizer]
    first_row: dict[int, int] = {}
    texts: list[str] = []
    positive_rows = sorted({row_of[d] for q in queries for d in q.positive_ids})
    passages.prefetch(positive_rows)
    for row in positive_rows:
        first_row[row] = len(texts)
        texts += passages.texts(row)
    retriever = bm25_index(texts, params)
    chosen = {}
    for query in queries:
        tokens = tokenize(query.query)
        scores = retriever.get_scores(tokens) if tokens else np.zeros(len(texts))
        for docid in query.positive_ids:
            start = first_row[row_of[docid]]
            chosen[(query.query_id, docid)] = int(np.argmax(scores[start : start + passages.count(row_of[docid])]))
    return chosen


def training_rows(mined: list[Mined], corpus: dict[str, str], passages: Passages | None,
                  row_of: dict[str, int]) -> list[dict]:
    """FlagEmbedding's training rows, plus where every text came from."""

    def text(docid: str, index: int) -> str:
        # Passage 0 of a document is written as the whole document: the trainer truncates it to the same text.
        return corpus[docid] if index == 0 else passages.texts(row_of[docid])[index]

    if passages is not None:
        passages.prefetch(row_of[d] for m in mined
                          for d, i in [*m.positives, *zip((d for d, _ in m.negatives), m.negative_passages)] if i > 0)
    return [
        {
            "query_id": m.query.query_id,
            "query": m.query.query,
            "pos": [text(d, i) for d, i in m.positives],
            "neg": [text(d, i) for (d, _), i in zip(m.negatives, m.negative_passages)],
            "pos_passages": [{"docid": d, "passage": i} for d, i in m.positives],
            "neg_passages": [{"docid": d, "passage": i} for (d, _), i in zip(m.negatives, m.negative_passages)],
            "neg_source": [s for _, s in m.negatives],
        }
        for m in mined
    ]


def run_mining(model_dir: Path, embeddings_dir: Path, corpus: dict[str, str], queries: list[TrainQuery],
               out_dir: Path, embedding: EmbeddingParams, encoding: EncodeParams, params: MineParams,
               long_documents: LongDocumentParams | None = None, params_file: Path = Path("params.yaml"),
               bm25: BM25Params | None = None) -> dict[str, float | int | str]:
    embedder = load_embedder(model_dir, embedding.pooling, encoding.precision)
    query_vectors = encode(embedder, with_instruction([q.query for q in queries], embedding.query_instruction),
                           embedding.query_max_len, encoding.batch_size, desc="mine: queries")
    stats = mine_with_vectors(model_dir, embeddings_dir, corpus, queries, query_vectors, out_dir, embedding, params,
                              long_documents, params_file, bm25)
    stats = {**stats, "query_precision": embedder.precision, "corpus_precision": corpus_precision(embeddings_dir)}
    logger.info("mined %s: %s", out_dir, ", ".join(f"{k} {v}" for k, v in stats.items()))
    return stats


def mine_with_vectors(tokenizer_dir: Path, embeddings_dir: Path, corpus: dict[str, str], queries: list[TrainQuery],
                      query_vectors: np.ndarray, out_dir: Path, embedding: EmbeddingParams, params: MineParams,
                      long_documents: LongDocumentParams | None = None, params_file: Path = Path("params.yaml"),
                      bm25: BM25Params | None = None) -> dict[str, float | int | None | dict[str, int]]:
    """Everything of mining after the queries are encoded: positives, negatives, train.jsonl, the stats."""
    docids, corpus_vectors = load_corpus_embeddings(embeddings_dir)
    if set(docids) != set(corpus):
        raise InputError(embeddings_dir, "the embeddings are of another corpus than the dataset's",
                         fix="re-run the embed stage")
    texts = [corpus[d] for d in docids]
    passages = (load_passages(tokenizer_dir, embeddings_dir, texts, embedding, long_documents)
                if params.needs_passages else None)
    row_of = {d: i for i, d in enumerate(docids)}
    chosen = (bm25_positive_passages(queries, row_of, passages, bm25 or BM25Params("jieba", 1.5, 0.75))
              if params.positive == "bm25_passage" else None)
    mined = mine(queries, docids, corpus_vectors, query_vectors, texts, params, passages, chosen)
    check_hard_coverage(mined, params, params_file)
    rows = training_rows(mined, corpus, passages, row_of)
    with atomic_dir(out_dir) as tmp:
        write_jsonl(tmp / "train.jsonl", rows)
    return mining_stats(mined)


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
    stats = run_mining(args.model_dir, args.embeddings_dir, corpus, queries, args.out_dir, embedding, encoding, params,
                       long_document_params(args.params), args.params, bm25_params(args.params))
    if args.stats:
        write_json(args.stats, stats)


if __name__ == "__main__":
    run_stage(main)
