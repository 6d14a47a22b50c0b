"""The text of each positive document that trains (`mine.positive`).

An MLDR question may be about any part of a long document, and its first 512 tokens
often do not hold the answer: `truncated` trains on the document as the trainer truncates it
(passage 0), `best_passage` on the passage the base model scores highest for the query, and
`bm25_passage` on the passage BM25 scores highest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from zh_retrieval.core.params import BM25Params, Positive
from zh_retrieval.data.prepared import TrainQuery
from zh_retrieval.mining.corpus import Passages
from zh_retrieval.retrieval.bm25 import TOKENIZERS, bm25_index


@dataclass(frozen=True)
class PassageRef:
    docid: str
    passage: int  # index among the document's passages; 0 is also the truncated document


BM25Choices = dict[tuple[str, str], int]  # (query_id, positive docid) => passage index


def bm25_positive_passages(queries: list[TrainQuery], row_of: dict[str, int], passages: Passages,
                           params: BM25Params) -> BM25Choices:
    """(query_id, positive docid) => the passage of that document BM25 scores highest for the query."""
    return bm25_best_passages([(q.query_id, q.query, q.positive_ids) for q in queries], row_of, passages, params)


def bm25_best_passages(requests: Sequence[tuple[str, str, Sequence[str]]], row_of: dict[str, int],
                       passages: Passages, params: BM25Params) -> BM25Choices:
    """(query_id, docid) => the passage of that document BM25 scores highest for the query, for every
    (query_id, query text, docids) requested.

    One index over the requested documents' passages, so IDF comes from passages like these; a query
    with no word left after tokenizing keeps passage 0.
    """
    tokenize = TOKENIZERS[params.tokenizer]
    first_row: dict[int, int] = {}  # document row => its first passage's row in the index
    texts: list[str] = []
    rows = sorted({row_of[d] for _, _, docids in requests for d in docids})
    passages.texts.prefetch(rows)
    for row in rows:
        first_row[row] = len(texts)
        texts += passages.texts.of(row)
    retriever = bm25_index(texts, params)
    choices = {}
    for query_id, query, docids in requests:
        tokens = tokenize(query)
        scores = retriever.get_scores(tokens) if tokens else np.zeros(len(texts))
        for docid in docids:
            start = first_row[row_of[docid]]
            choices[(query_id, docid)] = int(np.argmax(scores[start : start + passages.count(row_of[docid])]))
    return choices


def positive_passages(query: TrainQuery, row_of: dict[str, int], choice: Positive, query_vector: np.ndarray,
                      passages: Passages | None, bm25_choices: BM25Choices | None) -> list[PassageRef]:
    """The query's positives, each as the passage `choice` names."""
    refs = []
    for docid in query.positive_ids:
        if choice == "bm25_passage":
            passage = bm25_choices[(query.query_id, docid)]
        elif choice == "best_passage":
            passage = passages.best(row_of[docid], query_vector)
        else:
            passage = 0
        refs.append(PassageRef(docid, passage))
    return refs
