"""An MLDR-layout dataset turned into prepare's files (data/prepared.py has their format), all validated.

The corpus is not copied: later stages read it from the dataset directory (MLDR zh's is 2.5 GB).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from zh_retrieval.core.errors import InputError
from zh_retrieval.core.files import atomic_dir, check_model_dir, write_jsonl
from zh_retrieval.core.params import EVAL_SPLITS, PrepareParams
from zh_retrieval.data.mldr import Query, load_corpus, load_queries
from zh_retrieval.data.prepared import EVAL_QUERIES, QRELS, TRAIN_QUERIES

logger = logging.getLogger(__name__)

HUGE_DOCUMENT_CHARACTERS = 1_000_000  # MLDR zh averages 4,249 characters a document


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

    from zh_retrieval.data.passages import first_passage_end

    check_model_dir(tokenizer_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)
    ends: dict[str, int] = {}  # docid => character offset where its first passage ends
    groups = {}
    for query in located:
        docid = query.positive_ids[0]
        if docid not in ends:
            ends[docid] = first_passage_end(tokenizer, corpus[docid], passage_max_len)
        groups[query.query_id] = "first_passage" if query.evidence_offset < ends[docid] else "later"
    return groups


def has_split(dataset_dir: Path, split: str) -> bool:
    return any((dataset_dir / f"{split}.jsonl{gz}").is_file() for gz in ("", ".gz"))


def split_off_dev(train: list[Query], params: PrepareParams, dataset_dir: Path) -> tuple[list[Query], list[Query]]:
    """(train, dev) for a dataset without dev.jsonl: `dev_from_train` training queries, drawn with `dev_seed`,
    held out as dev; both keep the dataset's order."""
    if len(train) <= params.dev_from_train:
        raise InputError(dataset_dir, f"no dev.jsonl, and its {len(train)} training queries cannot spare "
                         f"prepare.dev_from_train ({params.dev_from_train}) for dev",
                         fix="add a dev.jsonl, or lower prepare.dev_from_train")
    held_out = set(random.Random(params.dev_seed).sample(range(len(train)), params.dev_from_train))
    return ([q for i, q in enumerate(train) if i not in held_out], [q for i, q in enumerate(train) if i in held_out])


def evaluation_splits(dataset_dir: Path, corpus: dict[str, str], params: PrepareParams
                      ) -> tuple[list[Query], dict[str, list[Query]], bool]:
    """(train, split => its queries, whether dev was drawn from train), each split checked against train."""
    train = load_queries(dataset_dir, "train", corpus)
    drawn = not has_split(dataset_dir, "dev")
    splits = {}
    if drawn:
        train, splits["dev"] = split_off_dev(train, params, dataset_dir)
        logger.warning("%s has no dev.jsonl: %d training queries, drawn with prepare.dev_seed %d, are dev "
                       "(prepare.dev_from_train)", dataset_dir, len(splits["dev"]), params.dev_seed)
    for split in EVAL_SPLITS:
        if split not in splits:
            splits[split] = load_queries(dataset_dir, split, corpus)
        check_held_out(dataset_dir, train, splits[split], split)
    shared = {q.query_id for q in splits["dev"]} & {q.query_id for q in splits["test"]}
    if shared:  # a choice read on dev would then read test too
        raise InputError(dataset_dir, f"{len(shared)} query ids are in both dev and test, e.g. {sorted(shared)[0]!r}",
                         fix="test must be held out from dev, where choices are made")
    return train, splits, drawn


def write_split(out_dir: Path, queries: list[Query], groups: dict[str, str]) -> None:
    out_dir.mkdir()
    write_jsonl(out_dir / EVAL_QUERIES, [
        {"query_id": q.query_id, "query": q.text}
        | ({"evidence_offset": q.evidence_offset, "evidence": groups[q.query_id]} if q.query_id in groups else {})
        for q in queries
    ])
    (out_dir / QRELS).write_text("\n".join(qrels_lines(queries)) + "\n", encoding="utf-8")


def prepare(dataset_dir: Path, out_dir: Path, params: PrepareParams, tokenizer_dir: Path | None = None,
            passage_max_len: int = 512) -> dict[str, int | bool]:
    """Write OUT_DIR (replaced whole, only once everything is valid); return the counts for the stats file."""
    corpus = load_corpus(dataset_dir)
    train, splits, dev_drawn = evaluation_splits(dataset_dir, corpus, params)
    groups = {split: evidence_groups(dataset_dir, queries, corpus, tokenizer_dir, passage_max_len)
              for split, queries in splits.items()}
    if len(corpus) < 2:
        raise InputError(dataset_dir, "the corpus needs at least 2 documents to draw negatives from")

    with atomic_dir(out_dir) as tmp:
        write_jsonl(tmp / TRAIN_QUERIES, [
            {"query_id": q.query_id, "query": q.text, "positive_ids": list(q.positive_ids),
             "negative_ids": list(q.negative_ids)}
            for q in train
        ])
        for split, queries in splits.items():
            write_split(tmp / split, queries, groups[split])
    stats: dict[str, int | bool] = {
        "corpus_documents": len(corpus),
        # Kept whole and cut into passages like any other; counted, so a stray dump of a file is seen.
        "corpus_documents_over_1m_characters": sum(len(text) > HUGE_DOCUMENT_CHARACTERS for text in corpus.values()),
        "corpus_longest_document_characters": max(map(len, corpus.values())),
        "train_queries": len(train),
        "train_dataset_negatives": sum(len(q.negative_ids) for q in train),
        "dev_drawn_from_train": dev_drawn,
    }
    for split, queries in splits.items():
        stats[f"{split}_queries"] = len(queries)
        stats[f"{split}_qrels"] = sum(len(q.positive_ids) for q in queries)
        if groups[split]:
            stats[f"{split}_evidence_first_passage"] = sum(g == "first_passage" for g in groups[split].values())
            stats[f"{split}_evidence_later"] = sum(g == "later" for g in groups[split].values())
    logger.info("prepared %s: %s", out_dir, ", ".join(f"{k} {v:,}" for k, v in stats.items()))
    return stats


def check_dataset(dataset_dir: Path) -> dict[str, int]:
    """Read a dataset directory the way prepare will and count what it holds; raise on the first problem.

    corpus.jsonl, train.jsonl and test.jsonl are required; dev.jsonl is optional (without it, prepare
    holds out `prepare.dev_from_train` training queries as dev). Each split must be disjoint from train.
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
        if split == "dev" and not has_split(dataset_dir, "dev"):
            continue
        queries = load_queries(dataset_dir, split, corpus)
        check_held_out(dataset_dir, train, queries, split)
        counts[f"{split}_queries"] = len(queries)
        counts[f"{split}_relevant_documents"] = sum(len(q.positive_ids) for q in queries)
    return counts
