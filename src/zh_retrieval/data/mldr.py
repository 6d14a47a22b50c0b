"""Read a dataset in MLDR's layout: `corpus.jsonl[.gz]` and `{train,dev,test}.jsonl[.gz]`.

    corpus:  {"docid": str, "text": str}
    queries: {"query_id": str, "query": str,
              "positive_passages": [{"docid": str, "text": str}], "negative_passages": [...],
              "evidence_offset": int}   optional, not in MLDR: where in the first positive's text
                                        the query's evidence starts (a character offset)

The same functions read Shitao/MLDR's `mldr-v1.0-zh` folder, the bundled sample and a user's
own corpus. Everything is validated on the way in, so a later stage never meets a query whose
positive document does not exist.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zh_retrieval.core.errors import InputError
from zh_retrieval.core.files import read_jsonl

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Query:
    query_id: str
    text: str
    positive_ids: tuple[str, ...]
    negative_ids: tuple[str, ...]  # the dataset's own negatives; empty in MLDR's dev and test
    evidence_offset: int | None = None  # character offset of the evidence in the first positive's text


def dataset_file(dataset_dir: Path, name: str) -> Path:
    """`<name>.jsonl` or `<name>.jsonl.gz` in the dataset directory, whichever exists."""
    if not dataset_dir.is_dir():
        raise InputError(dataset_dir, "dataset directory not found",
                         fix="set `dataset` in params.yaml to a directory in MLDR's layout")
    for candidate in (dataset_dir / f"{name}.jsonl", dataset_dir / f"{name}.jsonl.gz"):
        if candidate.is_file():
            return candidate
    raise InputError(dataset_dir / f"{name}.jsonl", "file not found (nor .jsonl.gz)",
                     fix=f"an MLDR-layout dataset has corpus.jsonl and {'/'.join(SPLITS)}.jsonl")


def _string_field(row: dict[str, Any], field: str, path: Path, line: int) -> str:
    value = row.get(field)
    if not isinstance(value, str) or not value.strip():
        problem = f"missing field `{field}`" if value is None else f"`{field}` must be a non-empty string"
        raise InputError(path, problem, line=line)
    return value


def iter_corpus(dataset_dir: Path) -> Iterator[tuple[str, str]]:
    """(docid, text) in file order, each docid once, holding one document at a time.

    A docid repeated with the same text is yielded once; with different text it is an error.
    Only a hash per docid is kept, so a 200,000-document corpus streams in little memory.
    """
    path = dataset_file(dataset_dir, "corpus")
    seen: dict[str, bytes] = {}  # docid => text digest
    for line, row in read_jsonl(path):
        docid = _string_field(row, "docid", path, line)
        text = _string_field(row, "text", path, line)
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
        if docid in seen:
            if seen[docid] != digest:
                raise InputError(path, f"docid {docid!r} appears twice with different text", line=line,
                                 fix="docids must be unique")
            continue
        seen[docid] = digest
        yield docid, text
    if not seen:
        raise InputError(path, "the corpus is empty")
    logger.info("corpus %s: %s documents", path, f"{len(seen):,}")


def load_corpus(dataset_dir: Path) -> dict[str, str]:
    """docid => text, in file order."""
    return dict(iter_corpus(dataset_dir))


def _passage_ids(row: dict[str, Any], field: str, path: Path, line: int, corpus: dict[str, str]) -> tuple[str, ...]:
    passages = row.get(field, [])
    if not isinstance(passages, list):
        raise InputError(path, f"`{field}` must be a list of {{docid, text}}", line=line)
    docids = []
    for passage in passages:
        docid = passage.get("docid") if isinstance(passage, dict) else None
        if not isinstance(docid, str):
            raise InputError(path, f"each entry of `{field}` needs a string `docid`", line=line)
        if docid not in corpus:
            raise InputError(path, f"{field} docid {docid!r} is not in the corpus", line=line,
                             fix="the corpus must hold every document the queries name")
        if docid not in docids:
            docids.append(docid)
    return tuple(docids)


def _evidence_offset(row: dict[str, Any], positive_text: str, path: Path, line: int) -> int | None:
    offset = row.get("evidence_offset")
    if offset is None:
        return None
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < len(positive_text):
        raise InputError(path, f"`evidence_offset` must be a character offset into the first positive document's "
                         f"text (0 to {len(positive_text) - 1}), not {offset!r}", line=line)
    return offset


def load_queries(dataset_dir: Path, split: str, corpus: dict[str, str]) -> list[Query]:
    """The split's queries, each with at least one positive document that exists in the corpus."""
    path = dataset_file(dataset_dir, split)
    queries: list[Query] = []
    seen: set[str] = set()
    for line, row in read_jsonl(path):
        query_id = row.get("query_id")
        if isinstance(query_id, int):
            query_id = str(query_id)
        query_id = _string_field({"query_id": query_id}, "query_id", path, line)
        if query_id in seen:
            raise InputError(path, f"query_id {query_id!r} appears twice", line=line, fix="query ids must be unique")
        seen.add(query_id)
        text = _string_field(row, "query", path, line)
        if "positive_passages" not in row:
            raise InputError(path, "missing field `positive_passages`", line=line)
        positives = _passage_ids(row, "positive_passages", path, line, corpus)
        if not positives:
            raise InputError(path, "`positive_passages` is empty", line=line,
                             fix="every query needs at least one relevant document")
        negatives = _passage_ids(row, "negative_passages", path, line, corpus)
        offset = _evidence_offset(row, corpus[positives[0]], path, line)
        queries.append(Query(query_id, text, positives, tuple(d for d in negatives if d not in positives), offset))
    if not queries:
        raise InputError(path, f"the {split} split has no queries")
    logger.info("%s %s: %s queries", split, path, f"{len(queries):,}")
    return queries
