"""prepare: an MLDR-layout dataset -> the training queries and the evaluation files, all validated.

    python -m zh_retrieval.prepare DATASET_DIR OUT_DIR --params params.yaml --tokenizer MODEL_DIR \
        --stats metrics/prepare.json
    python -m zh_retrieval.prepare --check DATASET_DIR     # validate a dataset and print its counts, nothing written

Writes, into OUT_DIR (replaced whole, only once everything is valid):
    train_queries.jsonl  {"query_id", "query", "positive_ids", "negative_ids"}  mine adds the negatives' texts
    queries.jsonl        {"query_id", "query"}                                the evaluation split's queries,
                         + {"evidence_offset", "evidence"} where the dataset   "evidence": "first_passage" when the
                         records where the evidence lies                       evidence starts inside what truncation
                                                                               at passage_max_len keeps, else "later"
    qrels.tsv            `query_id 0 docid 1` (TREC qrels)                    their relevant documents
The corpus is not copied: later stages read it from the dataset directory (MLDR zh's is 2.5 GB).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from zh_retrieval.errors import InputError, run_stage
from zh_retrieval.files import atomic_dir, check_model_dir, read_jsonl, write_json, write_jsonl
from zh_retrieval.metrics import read_qrels
from zh_retrieval.mldr import Query, load_corpus, load_queries
from zh_retrieval.params import PrepareParams, embedding_params, prepare_params

logger = logging.getLogger(__name__)


def qrels_lines(queries: list[Query]) -> list[str]:
    return [f"{q.query_id} 0 {docid} 1" for q in queries for docid in q.positive_ids]


def check_held_out(dataset_dir: Path, train: list[Query], evaluation: list[Query], split: str) -> None:
    overlap = {q.query_id for q in train} & {q.query_id for q in evaluation}
    if overlap:
        raise InputError(dataset_dir, f"{len(overlap)} query ids are in both train and {split}, "
                         f"e.g. {sorted(overlap)[0]!r}", fix="evaluation queries must be held out from training")


def evidence_groups(dataset_dir: Path, queries: list[Query], corpus: dict[str, str], tokenizer_dir: Path | None,
                    passage_max_len: int) -> dict[str, str]:
    """query_id => "first_passage" or "later", for the queries whose evidence position the dataset records.

    "first_passage": the evidence starts inside the first passage_max_len tokens of the document,
    which is all a truncating model sees; "later": only MaxP (or BM25) can reach it.
    """
    located = [q for q in queries if q.evidence_offset is not None]
    if not located:
        return {}
    if tokenizer_dir is None:
        raise InputError(dataset_dir, "its queries record `evidence_offset`, which takes the model's tokenizer "
                         "to place in passages", fix="pass --tokenizer MODEL_DIR (the base model)")
    from transformers import AutoTokenizer

    from zh_retrieval.passages import first_passage_end

    check_model_dir(tokenizer_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    ends: dict[str, int] = {}
    groups = {}
    for query in located:
        docid = query.positive_ids[0]
        if docid not in ends:
            ends[docid] = first_passage_end(tokenizer, corpus[docid], passage_max_len)
        groups[query.query_id] = "first_passage" if query.evidence_offset < ends[docid] else "later"
    return groups


def prepare(dataset_dir: Path, out_dir: Path, params: PrepareParams, tokenizer_dir: Path | None = None,
            passage_max_len: int = 512) -> dict[str, int]:
    corpus = load_corpus(dataset_dir)
    train = load_queries(dataset_dir, "train", corpus)
    evaluation = load_queries(dataset_dir, params.eval_split, corpus)
    check_held_out(dataset_dir, train, evaluation, params.eval_split)
    groups = evidence_groups(dataset_dir, evaluation, corpus, tokenizer_dir, passage_max_len)
    if len(corpus) < 2:
        raise InputError(dataset_dir, "the corpus needs at least 2 documents to draw negatives from")

    with atomic_dir(out_dir) as tmp:
        write_jsonl(tmp / "train_queries.jsonl", [
            {"query_id": q.query_id, "query": q.text, "positive_ids": list(q.positive_ids),
             "negative_ids": list(q.negative_ids)}
            for q in train
        ])
        write_jsonl(tmp / "queries.jsonl", [
            {"query_id": q.query_id, "query": q.text}
            | ({"evidence_offset": q.evidence_offset, "evidence": groups[q.query_id]} if q.query_id in groups else {})
            for q in evaluation
        ])
        (tmp / "qrels.tsv").write_text("\n".join(qrels_lines(evaluation)) + "\n", encoding="utf-8")
    stats = {
        "corpus_documents": len(corpus),
        "train_queries": len(train),
        "train_dataset_negatives": sum(len(q.negative_ids) for q in train),
        "eval_queries": len(evaluation),
        "eval_qrels": sum(len(q.positive_ids) for q in evaluation),
    }
    if groups:
        stats["eval_evidence_first_passage"] = sum(g == "first_passage" for g in groups.values())
        stats["eval_evidence_later"] = sum(g == "later" for g in groups.values())
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


def load_evidence_groups(prepared_dir: Path) -> dict[str, str]:
    """query_id => "first_passage" or "later", for the evaluation queries whose evidence position is known."""
    return {row["query_id"]: row["evidence"] for _, row in read_jsonl(prepared_dir / "queries.jsonl")
            if "evidence" in row}


def check_qrels_docids(qrels: dict[str, dict[str, int]], docids: set[str], qrels_path: Path, searched: Path) -> None:
    """Every relevant document must be in what is searched, or its query could never score."""
    unknown = {d for docs in qrels.values() for d in docs} - docids
    if unknown:
        raise InputError(qrels_path, f"{len(unknown)} relevant docids are not among the documents of {searched}, "
                         f"e.g. {sorted(unknown)[0]!r}", fix="re-run prepare (and embed) on the same dataset")


def check_dataset(dataset_dir: Path) -> dict[str, int]:
    """Read a dataset directory the way prepare will and count what it holds; raise on the first problem.

    corpus.jsonl, train.jsonl and test.jsonl are required; dev.jsonl is optional (needed only with
    `prepare.eval_split: dev`). Each split must be disjoint from train.
    """
    corpus = load_corpus(dataset_dir)
    train = load_queries(dataset_dir, "train", corpus)
    counts = {
        "corpus_documents": len(corpus),
        "corpus_mean_characters": round(sum(map(len, corpus.values())) / len(corpus)),
        "train_queries": len(train),
        "train_dataset_negatives": sum(len(q.negative_ids) for q in train),
    }
    for split in ("dev", "test"):
        if split == "dev" and not any((dataset_dir / f"dev.jsonl{gz}").is_file() for gz in ("", ".gz")):
            continue
        queries = load_queries(dataset_dir, split, corpus)
        check_held_out(dataset_dir, train, queries, split)
        counts[f"{split}_queries"] = len(queries)
        counts[f"{split}_relevant_documents"] = sum(len(q.positive_ids) for q in queries)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset_dir", type=Path, help="a directory in MLDR's layout")
    parser.add_argument("out_dir", type=Path, nargs="?", help="where to write the prepared files (not with --check)")
    parser.add_argument("--check", action="store_true",
                        help="only validate DATASET_DIR and print its counts; exit 2 naming the first problem")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--stats", type=Path, help="where to write the counts as JSON (a DVC metrics file)")
    parser.add_argument("--tokenizer", type=Path,
                        help="the model whose tokenizer places evidence offsets in passages (the base model)")
    args = parser.parse_args()
    if args.check:
        counts = check_dataset(args.dataset_dir)
        print(f"{args.dataset_dir}: a valid MLDR-layout dataset")
        for name, value in counts.items():
            print(f"  {name:<28} {value:>12,}")
        if "dev_queries" not in counts:
            print("  (no dev.jsonl: fine unless prepare.eval_split is dev)")
        return
    if args.out_dir is None:
        parser.error("OUT_DIR is required unless --check is given")
    stats = prepare(args.dataset_dir, args.out_dir, prepare_params(args.params), args.tokenizer,
                    embedding_params(args.params).passage_max_len)
    if args.stats:
        write_json(args.stats, stats)


if __name__ == "__main__":
    run_stage(main)
