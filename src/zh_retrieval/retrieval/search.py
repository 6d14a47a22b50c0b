"""Exact inner-product search over unit vectors (so the score is the cosine), by document or by passage.

Two implementations, deliberately. `search` ranks one vector per document with faiss's exact
IndexFlatIP (BLAS, batched, what mining and plain evaluation need at MLDR's 200,000 documents).
`maxp_search` must take each document's best passage *before* ranking; faiss's top-k over passages
cannot do that exactly (a document's best passage may lie beyond any fixed passage depth), so it
scores every passage with a matrix product and reduces per document. With one passage per document
the two give the same ranking (tests/test_search.py checks it), so MaxP could stand in for plain
search, at the cost of numpy's argpartition where faiss keeps a heap.
"""

from __future__ import annotations

import faiss
import numpy as np


def search(corpus_vectors: np.ndarray, query_vectors: np.ndarray, top_k: int, batch_size: int = 1024
           ) -> tuple[np.ndarray, np.ndarray]:
    """(scores, corpus row indices), each of shape (queries, min(top_k, corpus)), best first.

    Queries go in batches so the score matrix held at once is batch x corpus, not
    queries x corpus; the index is exact (IndexFlatIP), so no recall is lost to approximation.
    """
    index = faiss.IndexFlatIP(corpus_vectors.shape[1])
    index.add(np.ascontiguousarray(corpus_vectors, dtype=np.float32))
    k = min(top_k, corpus_vectors.shape[0])
    scores, indices = [], []
    for start in range(0, len(query_vectors), batch_size):
        batch = np.ascontiguousarray(query_vectors[start : start + batch_size], dtype=np.float32)
        s, i = index.search(batch, k)
        scores.append(s)
        indices.append(i)
    if not scores:
        return np.zeros((0, k), dtype=np.float32), np.zeros((0, k), dtype=np.int64)
    return np.concatenate(scores), np.concatenate(indices)


def maxp_search(passage_vectors: np.ndarray, passage_doc: np.ndarray, query_vectors: np.ndarray, top_k: int,
                batch_size: int = 512, passage_block: int = 32768) -> tuple[np.ndarray, np.ndarray]:
    """Like `search`, but a document scores its best passage's score (MaxP).

    `passage_doc[i]` is the document row of passage i; each document's passages are contiguous
    and in document order. Exact: every passage is scored, `batch_size` queries at a time.
    Passage vectors may be fp16 (as embed stores them, half of fp32's memory at MLDR's ~2 M
    passages); they are widened to fp32 `passage_block` passages at a time, so the products run
    in fp32 BLAS and no fp32 copy of the whole matrix is ever held.
    """
    starts = np.flatnonzero(np.diff(passage_doc, prepend=-1))
    n_docs = len(starts)
    k = min(top_k, n_docs)
    # Blocks of whole documents, about passage_block passages each: (first doc, last doc + 1).
    block_docs = np.unique(np.searchsorted(starts, np.arange(0, len(passage_doc), passage_block), side="right") - 1)
    blocks = list(zip(block_docs, [*block_docs[1:], n_docs]))
    doc_ends = np.append(starts[1:], len(passage_doc))
    all_scores, all_rows = [], []
    for begin in range(0, len(query_vectors), batch_size):
        queries = np.ascontiguousarray(query_vectors[begin : begin + batch_size], dtype=np.float32)
        doc_scores = np.empty((len(queries), n_docs), dtype=np.float32)
        for first, end in blocks:
            offset = starts[first]
            block = np.asarray(passage_vectors[offset : doc_ends[end - 1]], dtype=np.float32)
            doc_scores[:, first:end] = np.maximum.reduceat(queries @ block.T, starts[first:end] - offset, axis=1)
        rows = np.argpartition(doc_scores, n_docs - k, axis=1)[:, n_docs - k :]
        picked = np.take_along_axis(doc_scores, rows, axis=1)
        order = np.argsort(-picked, axis=1, kind="stable")
        all_rows.append(np.take_along_axis(rows, order, axis=1))
        all_scores.append(np.take_along_axis(picked, order, axis=1))
    if not all_rows:
        return np.zeros((0, k), dtype=np.float32), np.zeros((0, k), dtype=np.int64)
    return np.concatenate(all_scores), np.concatenate(all_rows)
