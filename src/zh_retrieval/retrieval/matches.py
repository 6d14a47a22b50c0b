"""Which passage of each retrieved document a query matched: the file MaxP evaluations write beside their run.

MaxP ranks a document by its best passage; the run file keeps only the document and the score.
`matched.tsv` keeps the passage, for each query's top MATCHED_DEPTH documents, so the report's
page can show what each model read without encoding anything again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MATCHED = "matched.tsv"
MATCHED_DEPTH = 10  # ranks of each MaxP run whose matched passage is written (the report's page shows 5)


def best_passages(passage_vectors: np.ndarray, passage_doc: np.ndarray, query_vectors: np.ndarray,
                  doc_rows: np.ndarray) -> np.ndarray:
    """For each query n and document row doc_rows[n, j], the index within that document of its passage
    the query scores highest: the passage MaxP ranked the document by. Shape of doc_rows; -1 stays -1."""
    starts = np.flatnonzero(np.diff(passage_doc, prepend=-1))
    ends = np.append(starts[1:], len(passage_doc))
    best = np.full(doc_rows.shape, -1, dtype=np.int64)
    for n, rows in enumerate(doc_rows):
        query = np.asarray(query_vectors[n], dtype=np.float32)
        for j, row in enumerate(rows):
            if row >= 0:
                block = np.asarray(passage_vectors[starts[row] : ends[row]], dtype=np.float32)
                best[n, j] = int(np.argmax(block @ query))
    return best


def write_matched(path: Path, query_ids: list[str], docids: list[str], rows: np.ndarray, passages: np.ndarray) -> None:
    """`query_id docid passage` per line, each query's documents in the search's order."""
    with path.open("w", encoding="utf-8") as f:
        for n, query_id in enumerate(query_ids):
            for row, passage in zip(rows[n], passages[n]):
                if row >= 0:
                    f.write(f"{query_id}\t{docids[row]}\t{passage}\n")


def read_matched(path: Path) -> dict[tuple[str, str], int]:
    """(query_id, docid) => the index of the passage it matched, from `write_matched`'s file."""
    matched = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        query_id, docid, passage = line.split("\t")
        matched[(query_id, docid)] = int(passage)
    return matched
