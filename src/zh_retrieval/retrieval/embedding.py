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
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from zh_retrieval.core.files import atomic_dir, write_json
from zh_retrieval.core.params import EmbeddingParams, EncodeParams, LongDocumentParams
from zh_retrieval.data.embeddings import (
    DOCIDS,
    ENCODING,
    PASSAGE_DOC,
    PASSAGE_DTYPE,
    PASSAGE_VECTORS,
    VECTORS,
    save_rows,
)
from zh_retrieval.data.passages import split_many
from zh_retrieval.retrieval.distributed import ShardedEncoder, rank_device
from zh_retrieval.retrieval.encode import encode, load_embedder, resolve_precision, visible_devices

logger = logging.getLogger(__name__)

CHUNK_DOCUMENTS = 8192  # documents held as text at once; sorting by length within a chunk keeps most of the gain


def _chunks(items: Iterable[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    chunk: list[tuple[str, str]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


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


def embed_corpus(model_dir: Path, corpus: Iterable[tuple[str, str]], out_dir: Path, embedding: EmbeddingParams,
                 params: EncodeParams, long_documents: LongDocumentParams | None = None,
                 chunk_size: int = CHUNK_DOCUMENTS, device: str | None = None,
                 group: tuple[int, int] | None = None) -> np.ndarray:
    """Encode every (docid, text) (truncated to passage_max_len); with MaxP on, every passage of it too.

    The corpus streams through in chunks of `chunk_size` documents, each sorted by length inside
    encode, so memory holds the vectors and one chunk of text, never the whole corpus. With MaxP,
    a document's own vector is its first passage's: the first passage is exactly the text
    truncation keeps, so the corpus is not encoded twice. In a torchrun group ((rank, world size),
    from distributed.start), each rank encodes its share of every chunk on its own device and
    rank 0 alone writes OUT_DIR; the other ranks return rows of width 0.
    """
    torch_device = rank_device() if group else torch.device(device or visible_devices()[0])
    precision = resolve_precision(params.precision, torch_device)
    embedder = load_embedder(model_dir, embedding.pooling, precision, torch_device)
    if group and group[1] > 1:
        sharded = ShardedEncoder(embedder, *group)

        def encode_texts(texts: list[str], desc: str) -> np.ndarray:
            return sharded.encode(texts, embedding.passage_max_len, params.batch_size, desc)
    else:
        def encode_texts(texts: list[str], desc: str) -> np.ndarray:
            return encode(embedder, texts, embedding.passage_max_len, params.batch_size, desc=desc)

    where = f"{group[1]} processes" if group and group[1] > 1 else str(torch_device)
    return _embed_chunks(corpus, out_dir, embedder.tokenizer, encode_texts, embedding, long_documents, chunk_size,
                         precision, f"{model_dir} on {where} in {precision}", write=not group or group[0] == 0)


def _embed_chunks(corpus: Iterable[tuple[str, str]], out_dir: Path, tokenizer, encode_texts,
                  embedding: EmbeddingParams, long_documents: LongDocumentParams | None, chunk_size: int,
                  precision: str, what: str, write: bool = True) -> np.ndarray:
    started = time.perf_counter()
    maxp = long_documents is not None and long_documents.maxp
    docids: list[str] = []
    vectors: list[np.ndarray] = []
    passage_vectors: list[np.ndarray] = []
    passage_doc: list[np.ndarray] = []
    for chunk in _chunks(corpus, chunk_size):
        desc = f"{out_dir.name}: documents {len(docids):,}+{len(chunk):,}"
        if maxp:
            document_vectors, passages, owners = _embed_passages(chunk, len(docids), tokenizer, encode_texts,
                                                                 embedding, long_documents, desc)
            passage_vectors.append(passages)
            passage_doc.append(owners)
            vectors.append(document_vectors)
        else:
            vectors.append(encode_texts([text for _, text in chunk], desc))
        docids.extend(docid for docid, _ in chunk)
        del chunk  # before the trim: the chunk's texts are the bulk of what it frees
        release_freed_memory()
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


def _embed_passages(chunk: list[tuple[str, str]], first_row: int, tokenizer, encode_texts,
                    embedding: EmbeddingParams, long_documents: LongDocumentParams, desc: str
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(document vectors, fp16 passage vectors, document row of each passage) for one chunk."""
    pieces = split_many(tokenizer, [text for _, text in chunk], embedding.passage_max_len, long_documents.overlap)
    owners = np.repeat(np.arange(first_row, first_row + len(chunk)), [len(p) for p in pieces])
    encoded = encode_texts([p for doc in pieces for p in doc], f"{desc} ({len(owners):,} passages)")
    return encoded[np.flatnonzero(np.diff(owners, prepend=-1))], encoded.astype(PASSAGE_DTYPE), owners
