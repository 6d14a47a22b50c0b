"""Exact inner-product search with faiss over unit vectors (so the score is the cosine)."""

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
