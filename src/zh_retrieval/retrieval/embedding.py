"""A whole corpus encoded with one model, streamed in chunks, into embed's format (data/embeddings.py).

The base model's corpus embeddings feed both hard-negative mining and the base model's
evaluation, so changing how negatives are mined never re-encodes the corpus. Under torchrun (the
embed stage launches it on a machine with several GPUs), every rank takes a share of each chunk
and rank 0 writes (retrieval/distributed.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from zh_retrieval.core.files import atomic_dir, write_json
from zh_retrieval.core.params import EmbeddingParams, EncodeParams, LongDocumentParams
from zh_retrieval.data.cut import Cut, cut_documents
from zh_retrieval.data.embeddings import (
    DOCIDS,
    ENCODING,
    PASSAGE_DOC,
    PASSAGE_DTYPE,
    PASSAGE_VECTORS,
    VECTORS,
    save_rows,
)
from zh_retrieval.retrieval.distributed import ShardedEncoder, rank_device
from zh_retrieval.retrieval.encode import encode_ids, load_embedder, resolve_precision, visible_devices

logger = logging.getLogger(__name__)

CHUNK_DOCUMENTS = 8192  # documents whose sequences are batched together; sorting within a chunk keeps most of the gain


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def release_freed_memory() -> None:
    """Give the heap's free pages back to the OS (glibc's malloc_trim); a no-op without glibc.

    Each chunk's texts, token ids and activations are freed once it is encoded, but glibc keeps
    the pages, and the next chunk's allocations do not reuse them exactly. Trimming lowers the
    resident memory between chunks; the peak is set inside a chunk (docs/speed-and-memory.md).
    """
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


NPY_HEADERS = 4096  # three .npy headers and encoding.json, generously


def embed_corpus(model_dir: Path, corpus: Iterable[tuple[str, str]] | Cut, out_dir: Path, embedding: EmbeddingParams,
                 params: EncodeParams, long_documents: LongDocumentParams | None = None,
                 chunk_size: int = CHUNK_DOCUMENTS, device: str | None = None,
                 group: tuple[int, int] | None = None) -> np.ndarray:
    """Encode every document (truncated to passage_max_len); with MaxP on, every passage of it too.

    `corpus` is the cut stage's Cut (data/cut.py: passages and their token ids, cut once for every
    model), or (docid, text) pairs, which are cut here the same way. The model reads token ids:
    no tokenizer runs in the encode loop. Documents go through in chunks of `chunk_size`, each
    chunk's sequences batched by length. With MaxP, a document's own vector is its first
    passage's wherever their ids are the same (the first passage is what truncation keeps), so
    the corpus is not encoded twice. In a torchrun group ((rank, world size), from
    distributed.start), each rank encodes its share of every chunk on its own device and rank 0
    alone writes OUT_DIR; the other ranks return rows of width 0.
    """
    torch_device = rank_device() if group else torch.device(device or visible_devices()[0])
    precision = resolve_precision(params.precision, torch_device)
    embedder = load_embedder(model_dir, embedding.pooling, precision, torch_device)
    maxp = long_documents is not None and long_documents.maxp
    if isinstance(corpus, Cut):
        corpus.check_tokenizer(embedder.tokenizer, model_dir)
    else:
        corpus = cut_documents(embedder.tokenizer, list(corpus), embedding.passage_max_len,
                               long_documents.overlap if long_documents else 0)
    if group and group[1] > 1:
        sharded = ShardedEncoder(embedder, *group)

        def encode_sequences(sequences: list[np.ndarray], lengths: list[int], desc: str) -> np.ndarray:
            return sharded.encode(sequences, lengths, params.batch_size, desc)
    else:
        def encode_sequences(sequences: list[np.ndarray], lengths: list[int], desc: str) -> np.ndarray:
            return encode_ids(embedder, sequences, lengths, params.batch_size, desc=desc)

    where = f"{group[1]} processes" if group and group[1] > 1 else str(torch_device)
    return _embed_chunks(corpus, out_dir, encode_sequences, maxp, chunk_size, precision,
                         f"{model_dir} on {where} in {precision}", write=not group or group[0] == 0)


def _embed_chunks(cut: Cut, out_dir: Path, encode_sequences, maxp: bool, chunk_size: int, precision: str, what: str,
                  write: bool = True) -> np.ndarray:
    started = time.perf_counter()
    doc_start = cut.doc_start
    vectors: list[np.ndarray] = []
    passage_vectors: list[np.ndarray] = []
    passage_doc: list[np.ndarray] = []
    for first in range(0, len(cut.docids), chunk_size):
        rows = np.arange(first, min(first + chunk_size, len(cut.docids)))
        desc = f"{out_dir.name}: documents {first:,}+{len(rows):,}"
        if maxp:
            document_vectors, passages, owners = _embed_passages(cut, rows, doc_start, encode_sequences, desc)
            passage_vectors.append(passages)
            passage_doc.append(owners)
            vectors.append(document_vectors)
        else:
            vectors.append(encode_sequences([cut.sequence(cut.truncated[row]) for row in rows],
                                            [int(cut.doc_chars[row]) for row in rows], desc))
        release_freed_memory()
    docids = cut.docids
    corpus_vectors = np.concatenate(vectors)
    if not write:  # a torchrun rank other than 0: its rows went to rank 0, which writes them
        return corpus_vectors
    needed = (corpus_vectors.nbytes + sum(len(d.encode()) + 1 for d in docids)
              + sum(p.nbytes for p in passage_vectors) + sum(p.nbytes for p in passage_doc) + NPY_HEADERS)
    with atomic_dir(out_dir, needed_bytes=needed) as tmp:
        np.save(tmp / VECTORS, corpus_vectors)
        (tmp / DOCIDS).write_text("".join(f"{d}\n" for d in docids), encoding="utf-8")
        write_json(tmp / ENCODING, {"precision": precision})
        if maxp:
            save_rows(tmp / PASSAGE_VECTORS, passage_vectors)
            save_rows(tmp / PASSAGE_DOC, passage_doc)
            logger.info("MaxP: %s documents -> %s passages", f"{len(docids):,}",
                        f"{sum(len(p) for p in passage_doc):,}")
    logger.info("embedded %s documents with %s in %.1fs -> %s", f"{len(docids):,}", what,
                time.perf_counter() - started, out_dir)
    return corpus_vectors


def _embed_passages(cut: Cut, rows: np.ndarray, doc_start: np.ndarray, encode_sequences, desc: str
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(document vectors, fp16 passage vectors, document row of each passage) for one chunk of document rows:
    its passages, and the truncated documents whose ids are not their first passage's."""
    passage_rows = np.arange(doc_start[rows[0]], doc_start[rows[-1] + 1])
    owners = cut.passage_doc[passage_rows]
    apart = [row for row in rows if cut.truncated[row] != doc_start[row]]
    sequences = [cut.sequence(i) for i in passage_rows] + [cut.sequence(cut.truncated[row]) for row in apart]
    lengths = [int(end - start) for start, end in cut.spans[passage_rows]] + [int(cut.doc_chars[row]) for row in apart]
    encoded = encode_sequences(sequences, lengths, f"{desc} ({len(owners):,} passages)")
    documents = encoded[doc_start[rows] - passage_rows[0]]
    for index, row in enumerate(apart):
        documents[row - rows[0]] = encoded[len(passage_rows) + index]
    return documents, encoded[: len(passage_rows)].astype(PASSAGE_DTYPE), owners
