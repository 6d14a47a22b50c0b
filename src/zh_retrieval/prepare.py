"""prepare: an MLDR-layout dataset -> FlagEmbedding's training file and the evaluation files.

    python -m zh_retrieval.prepare DATASET_DIR OUT_DIR --params params.yaml --stats metrics/prepare.json

Writes, into OUT_DIR (replaced whole, only once everything is valid):
    train.jsonl    {"query_id", "query", "pos": [text], "neg": [text]}  what FlagEmbedding trains on
    queries.jsonl  {"query_id", "query"}                                the evaluation split's queries
    qrels.tsv      `query_id 0 docid 1` (TREC qrels)                    their relevant documents
The corpus is not copied: evaluate reads it from the dataset directory (MLDR zh's is 2.5 GB).

Each training query gets `negatives_per_query` negatives drawn uniformly from the corpus
(never a positive), after the dataset's own negatives when `use_dataset_negatives` is on:
FlagEmbedding needs at least one negative per query, and MLDR's train split ships some.
"""

from __future__ import annotations

import argparse
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from zh_retrieval.errors import InputError, run_stage
from zh_retrieval.files import atomic_dir, write_json, write_jsonl
from zh_retrieval.mldr import Query, load_corpus, load_queries
from zh_retrieval.params import PrepareParams, prepare_params

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainExample:
    query_id: str
    query: str
    positive_ids: tuple[str, ...]
    negative_ids: tuple[str, ...]


def choose_negatives(
    queries: list[Query], docids: list[str], params: PrepareParams, rng: random.Random
) -> list[TrainExample]:
    """Attach `negatives_per_query` negatives to each query: the dataset's own first (if kept), then random ones."""
    examples = []
    for query in queries:
        excluded = set(query.positive_ids)
        negatives = list(query.negative_ids[: params.negatives_per_query]) if params.use_dataset_negatives else []
        excluded.update(negatives)
        available = len(docids) - len(excluded)
        wanted = min(params.negatives_per_query - len(negatives), available)
        while wanted > 0:
            docid = docids[rng.randrange(len(docids))]
            if docid not in excluded:
                negatives.append(docid)
                excluded.add(docid)
                wanted -= 1
        if not negatives:
            raise InputError("corpus", f"query {query.query_id!r} has no document left to use as a negative",
                             fix="the corpus needs documents besides each query's positives")
        examples.append(TrainExample(query.query_id, query.text, query.positive_ids, tuple(negatives)))
    return examples


def qrels_lines(queries: list[Query]) -> list[str]:
    return [f"{q.query_id} 0 {docid} 1" for q in queries for docid in q.positive_ids]


def prepare(dataset_dir: Path, out_dir: Path, params: PrepareParams) -> dict[str, int]:
    corpus = load_corpus(dataset_dir)
    train = load_queries(dataset_dir, "train", corpus)
    evaluation = load_queries(dataset_dir, params.eval_split, corpus)
    overlap = {q.query_id for q in train} & {q.query_id for q in evaluation}
    if overlap:
        raise InputError(dataset_dir, f"{len(overlap)} query ids are in both train and {params.eval_split}, "
                         f"e.g. {sorted(overlap)[0]!r}", fix="evaluation queries must be held out from training")
    if len(corpus) < 2:
        raise InputError(dataset_dir, "the corpus needs at least 2 documents to draw negatives from")

    examples = choose_negatives(train, sorted(corpus), params, random.Random(params.seed))
    with atomic_dir(out_dir) as tmp:
        write_jsonl(tmp / "train.jsonl", [
            {
                "query_id": e.query_id,
                "query": e.query,
                "pos": [corpus[d] for d in e.positive_ids],
                "neg": [corpus[d] for d in e.negative_ids],
            }
            for e in examples
        ])
        write_jsonl(tmp / "queries.jsonl", [{"query_id": q.query_id, "query": q.text} for q in evaluation])
        (tmp / "qrels.tsv").write_text("\n".join(qrels_lines(evaluation)) + "\n", encoding="utf-8")
    stats = {
        "corpus_documents": len(corpus),
        "train_queries": len(examples),
        "train_negatives": sum(len(e.negative_ids) for e in examples),
        "eval_queries": len(evaluation),
        "eval_qrels": sum(len(q.positive_ids) for q in evaluation),
    }
    logger.info("prepared %s: %s", out_dir, ", ".join(f"{k} {v:,}" for k, v in stats.items()))
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset_dir", type=Path, help="a directory in MLDR's layout")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--stats", type=Path, help="where to write the counts as JSON (a DVC metrics file)")
    args = parser.parse_args()
    stats = prepare(args.dataset_dir, args.out_dir, prepare_params(args.params))
    if args.stats:
        write_json(args.stats, stats)


if __name__ == "__main__":
    run_stage(main)
