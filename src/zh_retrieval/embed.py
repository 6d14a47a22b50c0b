"""embed: encode a dataset's whole corpus with one model, once, for every stage that searches it.

    python -m zh_retrieval.embed MODEL_DIR DATASET_DIR OUT_DIR --params params.yaml

Writes OUT_DIR/corpus.npy (float32, one unit vector per document) and OUT_DIR/docids.txt (the
docid of each row); with `long_documents.maxp`, also passages.npy (one vector per overlapping
passage) and passage_doc.npy (the document row of each passage); encoding.json records the precision
the vectors were computed in (`encode.precision: auto` resolves per machine). The base model's corpus
embeddings feed both hard-negative mining and the base model's evaluation, so changing how
negatives are mined never re-encodes the corpus. Every visible GPU takes a share of the work.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

from zh_retrieval.encode import encode, load_embedder, resolve_precision, visible_devices
from zh_retrieval.errors import InputError, run_stage
from zh_retrieval.files import atomic_dir, write_json
from zh_retrieval.mldr import iter_corpus
from zh_retrieval.multidevice import DevicePool
from zh_retrieval.params import (
    EmbeddingParams,
    EncodeParams,
    LongDocumentParams,
    embedding_params,
    encode_params,
    long_document_params,
)
from zh_retrieval.passages import split_into_passages

logger = logging.getLogger(__name__)

VECTORS = "corpus.npy"
DOCIDS = "docids.txt"
PASSAGE_VECTORS = "passages.npy"  # MaxP only
PASSAGE_DOC = "passage_doc.npy"  # document row of each passage
ENCODING = "encoding.json"  # how the vectors were computed: {"precision": "bf16"}; stages that read them record it
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


def embed_corpus(model_dir: Path, corpus: Iterable[tuple[str, str]], out_dir: Path, embedding: EmbeddingParams,
                 params: EncodeParams, long_documents: LongDocumentParams | None = None,
                 chunk_size: int = CHUNK_DOCUMENTS, devices: list[str] | None = None) -> np.ndarray:
    """Encode every (docid, text) (truncated to passage_max_len); with MaxP on, every passage of it too.

    The corpus streams through in chunks of `chunk_size` documents, each sorted by length inside
    encode, so memory holds the vectors and one chunk of text, never the whole corpus. With MaxP,
    a document's own vector is its first passage's: the first passage is exactly the text
    truncation keeps, so the corpus is not encoded twice. With several devices (default: every
    visible GPU), each encodes a share of every chunk in its own process.
    """
    devices = devices or visible_devices()
    precision = resolve_precision(params.precision, torch.device(devices[0]))
    with contextlib.ExitStack() as stack:
        if len(devices) > 1:
            pool = stack.enter_context(DevicePool(model_dir, embedding.pooling, precision, devices))
            tokenizer = AutoTokenizer.from_pretrained(model_dir)

            def encode_texts(texts: list[str], desc: str) -> np.ndarray:
                return pool.encode(texts, embedding.passage_max_len, params.batch_size, desc=desc)
        else:
            embedder = load_embedder(model_dir, embedding.pooling, precision, torch.device(devices[0]))
            tokenizer = embedder.tokenizer

            def encode_texts(texts: list[str], desc: str) -> np.ndarray:
                return encode(embedder, texts, embedding.passage_max_len, params.batch_size, desc=desc)

        return _embed_chunks(corpus, out_dir, tokenizer, encode_texts, embedding, long_documents, chunk_size,
                             precision, f"{model_dir} on {', '.join(devices)} in {precision}")


def _embed_chunks(corpus: Iterable[tuple[str, str]], out_dir: Path, tokenizer, encode_texts,
                  embedding: EmbeddingParams, long_documents: LongDocumentParams | None, chunk_size: int,
                  precision: str, what: str) -> np.ndarray:
    started = time.perf_counter()
    maxp = long_documents is not None and long_documents.maxp
    docids: list[str] = []
    vectors: list[np.ndarray] = []
    passage_vectors: list[np.ndarray] = []
    passage_doc: list[np.ndarray] = []
    for chunk in _chunks(corpus, chunk_size):
        desc = f"{out_dir.name}: documents {len(docids):,}+{len(chunk):,}"
        if maxp:
            pieces = [split_into_passages(tokenizer, text, embedding.passage_max_len, long_documents.overlap)
                      for _, text in chunk]
            owners = np.repeat(np.arange(len(docids), len(docids) + len(chunk)), [len(p) for p in pieces])
            encoded = encode_texts([p for doc in pieces for p in doc], f"{desc} ({len(owners):,} passages)")
            passage_vectors.append(encoded)
            passage_doc.append(owners)
            vectors.append(encoded[np.flatnonzero(np.diff(owners, prepend=-1))])
        else:
            vectors.append(encode_texts([text for _, text in chunk], desc))
        docids.extend(docid for docid, _ in chunk)
    corpus_vectors = np.concatenate(vectors)
    with atomic_dir(out_dir) as tmp:
        np.save(tmp / VECTORS, corpus_vectors)
        (tmp / DOCIDS).write_text("".join(f"{d}\n" for d in docids), encoding="utf-8")
        write_json(tmp / ENCODING, {"precision": precision})
        if maxp:
            np.save(tmp / PASSAGE_VECTORS, np.concatenate(passage_vectors))
            np.save(tmp / PASSAGE_DOC, np.concatenate(passage_doc))
            logger.info("MaxP: %s documents -> %s passages", f"{len(docids):,}",
                        f"{sum(len(p) for p in passage_doc):,}")
    logger.info("embedded %s documents with %s in %.1fs -> %s", f"{len(docids):,}", what,
                time.perf_counter() - started, out_dir)
    return corpus_vectors


def load_passage_embeddings(embeddings_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(passage vectors, document row of each passage), or None if the corpus was embedded without MaxP."""
    if not (embeddings_dir / PASSAGE_VECTORS).is_file():
        return None
    return (np.load(embeddings_dir / PASSAGE_VECTORS, allow_pickle=False),
            np.load(embeddings_dir / PASSAGE_DOC, allow_pickle=False))


def corpus_precision(embeddings_dir: Path) -> str:
    """The precision the corpus vectors were computed in (fp32, bf16 or fp16), as embed recorded it."""
    path = embeddings_dir / ENCODING
    if not path.is_file():
        raise InputError(path, "file not found", fix="re-run the embed stage")
    return json.loads(path.read_text(encoding="utf-8"))["precision"]


def load_corpus_embeddings(embeddings_dir: Path) -> tuple[list[str], np.ndarray]:
    """(docids, vectors) as embed wrote them; rows of vectors follow docids."""
    vectors_path, docids_path = embeddings_dir / VECTORS, embeddings_dir / DOCIDS
    for path in (vectors_path, docids_path):
        if not path.is_file():
            raise InputError(path, "file not found", fix="run the embed stage first")
    docids = docids_path.read_text(encoding="utf-8").splitlines()
    vectors = np.load(vectors_path, allow_pickle=False)
    if vectors.ndim != 2 or vectors.shape[0] != len(docids):
        raise InputError(vectors_path, f"shape {vectors.shape} does not match {len(docids)} docids in {docids_path}")
    return docids, vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("dataset_dir", type=Path, help="the MLDR-layout directory whose corpus is encoded")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    embedding, params = embedding_params(args.params), encode_params(args.params)
    embed_corpus(args.model_dir, iter_corpus(args.dataset_dir), args.out_dir, embedding, params,
                 long_document_params(args.params))


if __name__ == "__main__":
    run_stage(main)
