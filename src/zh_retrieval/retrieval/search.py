"""Exact inner-product search over unit vectors (so the score is the cosine), by document or by passage.

On a GPU (when torch sees one) both run as torch matrix products there, in blocks that fit its
memory (`torch_search`, `torch_maxp_search`): 10,000 queries x 2 M passages x 768 is ~30 TFLOP,
seconds on a GPU where 2 CPU cores take minutes. On the CPU they keep faiss and numpy, below;
tests/test_search.py checks that the torch path, run on the CPU, gives their top-k apart from ties.

Two CPU implementations, deliberately. `search` ranks one vector per document with faiss's exact
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

AUTO = "auto"  # a GPU when torch sees one, else the CPU


def search_device(device: str | None) -> str | None:
    """The torch device `device` resolves to, or None for the CPU's faiss and numpy."""
    if device != AUTO:
        return device
    import torch

    return "cuda:0" if torch.cuda.is_available() else None


def search(corpus_vectors: np.ndarray, query_vectors: np.ndarray, top_k: int, batch_size: int = 1024,
           device: str | None = AUTO) -> tuple[np.ndarray, np.ndarray]:
    """(scores, corpus row indices), each of shape (queries, min(top_k, corpus)), best first.

    Queries go in batches so the score matrix held at once is batch x corpus, not
    queries x corpus; the index is exact (IndexFlatIP), so no recall is lost to approximation.
    """
    if (torch_device := search_device(device)) is not None:
        return torch_search(corpus_vectors, query_vectors, top_k, torch_device, batch_size)
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
                batch_size: int = 512, passage_block: int = 32768, device: str | None = AUTO
                ) -> tuple[np.ndarray, np.ndarray]:
    """Like `search`, but a document scores its best passage's score (MaxP).

    `passage_doc[i]` is the document row of passage i; each document's passages are contiguous
    and in document order. Exact: every passage is scored, `batch_size` queries at a time.
    Passage vectors may be fp16 (as embed stores them, half of fp32's memory at MLDR's ~2 M
    passages); they are widened to fp32 `passage_block` passages at a time, so the products run
    in fp32 BLAS and no fp32 copy of the whole matrix is ever held.
    """
    if (torch_device := search_device(device)) is not None:
        return torch_maxp_search(passage_vectors, passage_doc, query_vectors, top_k, torch_device, batch_size)
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


def _empty(k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, k), dtype=np.float32), np.zeros((0, k), dtype=np.int64)


def _block_rows(vectors: np.ndarray, queries: int, device: str, block_rows: int | None) -> int:
    """Rows of `vectors` per product: the (queries x rows) fp32 scores and the widened block take at most
    an eighth of the device's free memory."""
    if block_rows is not None:
        return block_rows
    import torch

    free = torch.cuda.mem_get_info(device)[0] if device.startswith("cuda") else 2**31
    return max(1024, free // 8 // (4 * (queries + vectors.shape[1])))


def _device_blocks(vectors: np.ndarray, device: str, rows: int):
    """A function giving (first row, block on the device in its stored dtype), `rows` rows a block, each time it
    is called. The whole matrix is copied to the device once where it takes under half of its free memory
    (MLDR's 2 M fp16 passages: 3 GB); else each block is copied again when its turn comes."""
    import torch

    free = torch.cuda.mem_get_info(device)[0] if device.startswith("cuda") else 0
    if device == "cpu" or vectors.nbytes < free // 2:
        whole = torch.from_numpy(np.ascontiguousarray(vectors)).to(device)
        resident = [(start, whole[start : start + rows]) for start in range(0, len(vectors), rows)]
        return lambda: resident
    return lambda: ((start, torch.from_numpy(np.ascontiguousarray(vectors[start : start + rows])).to(device))
                    for start in range(0, len(vectors), rows))


def torch_search(corpus_vectors: np.ndarray, query_vectors: np.ndarray, top_k: int, device: str,
                 batch_size: int = 1024, block_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`search` as torch products on `device`: each block's top k, merged into the corpus's top k. Products in
    fp32 (TF32 stays off, torch's default), so the scores are faiss's up to summation order."""
    import torch

    k = min(top_k, corpus_vectors.shape[0])
    if len(query_vectors) == 0:
        return _empty(k)
    rows = _block_rows(corpus_vectors, batch_size, device, block_rows)
    blocks = _device_blocks(corpus_vectors, device, rows)
    all_scores, all_rows = [], []
    with torch.inference_mode():
        for begin in range(0, len(query_vectors), batch_size):
            queries = torch.from_numpy(np.ascontiguousarray(query_vectors[begin : begin + batch_size],
                                                            dtype=np.float32)).to(device)
            best_scores = best_rows = None
            for start, block in blocks():
                scores, picked = torch.topk(queries @ block.float().T, min(k, len(block)), dim=1)
                picked += start
                if best_scores is not None:
                    scores, picked = torch.cat([best_scores, scores], 1), torch.cat([best_rows, picked], 1)
                    scores, order = torch.topk(scores, k, dim=1)
                    picked = torch.gather(picked, 1, order)
                best_scores, best_rows = scores, picked
            all_scores.append(best_scores.cpu().numpy())
            all_rows.append(best_rows.cpu().numpy())
    return np.concatenate(all_scores), np.concatenate(all_rows).astype(np.int64)


def torch_maxp_search(passage_vectors: np.ndarray, passage_doc: np.ndarray, query_vectors: np.ndarray, top_k: int,
                      device: str, batch_size: int = 512, block_rows: int | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """`maxp_search` as torch products on `device`: every passage scored, each document's maximum taken with
    scatter_reduce, then the top k documents. Documents are numbered as `maxp_search` numbers them."""
    import torch

    doc_index = np.cumsum(np.diff(passage_doc, prepend=-1) != 0) - 1  # contiguous runs => 0, 1, 2, ...
    n_docs = int(doc_index[-1]) + 1 if len(doc_index) else 0
    k = min(top_k, n_docs)
    if len(query_vectors) == 0:
        return _empty(k)
    rows = _block_rows(passage_vectors, batch_size, device, block_rows)
    blocks = _device_blocks(passage_vectors, device, rows)
    owner = torch.from_numpy(doc_index.astype(np.int64)).to(device)
    all_scores, all_rows = [], []
    with torch.inference_mode():
        for begin in range(0, len(query_vectors), batch_size):
            queries = torch.from_numpy(np.ascontiguousarray(query_vectors[begin : begin + batch_size],
                                                            dtype=np.float32)).to(device)
            doc_scores = torch.full((len(queries), n_docs), float("-inf"), device=device)
            for start, block in blocks():
                scores = queries @ block.float().T
                doc_scores.scatter_reduce_(1, owner[start : start + len(block)].expand(len(queries), -1), scores,
                                           reduce="amax")
            scores, picked = torch.topk(doc_scores, k, dim=1)
            all_scores.append(scores.cpu().numpy())
            all_rows.append(picked.cpu().numpy())
    return np.concatenate(all_scores), np.concatenate(all_rows).astype(np.int64)
