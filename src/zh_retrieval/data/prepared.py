"""What prepare writes, read back by the stages after it: training queries, evaluation queries, qrels.

    train_queries.jsonl    {"query_id", "query", "positive_ids", "negative_ids"}
    dev/, test/            one directory per evaluation split (core.params.EVAL_SPLITS), each with
      queries.jsonl        {"query_id", "query"} + {"evidence_offset", "evidence"} where the dataset
                           records where a query's evidence lies: "first_passage" when it starts inside
                           what truncation at passage_max_len keeps, else "later"
      qrels.tsv            `query_id 0 docid 1` (TREC qrels)

The readers below take a split's directory (`data/prepared/dev`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zh_retrieval.core.errors import InputError
from zh_retrieval.core.files import read_jsonl
from zh_retrieval.retrieval.metrics import read_qrels

TRAIN_QUERIES = "train_queries.jsonl"
EVAL_QUERIES = "queries.jsonl"
QRELS = "qrels.tsv"


@dataclass(frozen=True)
class TrainQuery:
    query_id: str
    query: str
    positive_ids: tuple[str, ...]
    negative_ids: tuple[str, ...]  # the dataset's own


def read_train_queries(path: Path) -> list[TrainQuery]:
    return [
        TrainQuery(row["query_id"], row["query"], tuple(row["positive_ids"]), tuple(row["negative_ids"]))
        for _, row in read_jsonl(path)
    ]


def load_eval_queries(prepared_dir: Path) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """(query_id => query text, qrels) as prepare wrote them."""
    queries = {row["query_id"]: row["query"] for _, row in read_jsonl(prepared_dir / EVAL_QUERIES)}
    qrels_path = prepared_dir / QRELS
    if not qrels_path.is_file():
        raise InputError(qrels_path, "file not found", fix="run the prepare stage first")
    qrels = read_qrels(qrels_path)
    missing = set(qrels) - set(queries)
    if missing:
        raise InputError(qrels_path, f"{len(missing)} query ids have no query text, e.g. {sorted(missing)[0]!r}")
    return queries, qrels


def load_evidence_groups(prepared_dir: Path) -> dict[str, str]:
    """query_id => "first_passage" or "later", for the evaluation queries whose evidence position is known."""
    return {row["query_id"]: row["evidence"] for _, row in read_jsonl(prepared_dir / EVAL_QUERIES)
            if "evidence" in row}


def check_qrels_docids(qrels: dict[str, dict[str, int]], docids: set[str], qrels_path: Path, searched: Path) -> None:
    """Every relevant document must be in what is searched, or its query could never score."""
    unknown = {d for docs in qrels.values() for d in docs} - docids
    if unknown:
        raise InputError(qrels_path, f"{len(unknown)} relevant docids are not among the documents of {searched}, "
                         f"e.g. {sorted(unknown)[0]!r}", fix="re-run prepare (and embed) on the same dataset")
