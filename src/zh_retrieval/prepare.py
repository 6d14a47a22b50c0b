"""prepare: an MLDR-layout dataset -> the training queries and the evaluation files, all validated.

    python -m zh_retrieval.prepare DATASET_DIR OUT_DIR --params params.yaml --stats metrics/prepare.json

Writes, into OUT_DIR (replaced whole, only once everything is valid):
    train_queries.jsonl  {"query_id", "query", "positive_ids", "negative_ids"}  mine adds the negatives' texts
    queries.jsonl        {"query_id", "query"}                                the evaluation split's queries
    qrels.tsv            `query_id 0 docid 1` (TREC qrels)                    their relevant documents
The corpus is not copied: later stages read it from the dataset directory (MLDR zh's is 2.5 GB).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from zh_retrieval.errors import InputError, run_stage
from zh_retrieval.files import atomic_dir, read_jsonl, write_json, write_jsonl
from zh_retrieval.metrics import read_qrels
from zh_retrieval.mldr import Query, load_corpus, load_queries
from zh_retrieval.params import PrepareParams, prepare_params

logger = logging.getLogger(__name__)


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

    with atomic_dir(out_dir) as tmp:
        write_jsonl(tmp / "train_queries.jsonl", [
            {"query_id": q.query_id, "query": q.text, "positive_ids": list(q.positive_ids),
             "negative_ids": list(q.negative_ids)}
            for q in train
        ])
        write_jsonl(tmp / "queries.jsonl", [{"query_id": q.query_id, "query": q.text} for q in evaluation])
        (tmp / "qrels.tsv").write_text("\n".join(qrels_lines(evaluation)) + "\n", encoding="utf-8")
    stats = {
        "corpus_documents": len(corpus),
        "train_queries": len(train),
        "train_dataset_negatives": sum(len(q.negative_ids) for q in train),
        "eval_queries": len(evaluation),
        "eval_qrels": sum(len(q.positive_ids) for q in evaluation),
    }
    logger.info("prepared %s: %s", out_dir, ", ".join(f"{k} {v:,}" for k, v in stats.items()))
    return stats


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


def check_qrels_docids(qrels: dict[str, dict[str, int]], docids: set[str], qrels_path: Path, searched: Path) -> None:
    """Every relevant document must be in what is searched, or its query could never score."""
    unknown = {d for docs in qrels.values() for d in docs} - docids
    if unknown:
        raise InputError(qrels_path, f"{len(unknown)} relevant docids are not among the documents of {searched}, "
                         f"e.g. {sorted(unknown)[0]!r}", fix="re-run prepare (and embed) on the same dataset")


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
