"""embed: encode a dataset's whole corpus with one model, once, for every stage that searches it.

    python -m zh_retrieval.embed MODEL_DIR DATASET_DIR OUT_DIR --params params.yaml

Writes OUT_DIR/corpus.npy (float32, one unit vector per document) and OUT_DIR/docids.txt (the
docid of each row). The base model's corpus embeddings feed both hard-negative mining and the
base model's evaluation, so changing how negatives are mined never re-encodes the corpus.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from zh_retrieval.encode import encode, load_embedder
from zh_retrieval.errors import InputError, run_stage
from zh_retrieval.files import atomic_dir
from zh_retrieval.mldr import load_corpus
from zh_retrieval.params import EmbeddingParams, EncodeParams, embedding_params, encode_params

logger = logging.getLogger(__name__)

VECTORS = "corpus.npy"
DOCIDS = "docids.txt"


def embed_corpus(model_dir: Path, corpus: dict[str, str], out_dir: Path, embedding: EmbeddingParams,
                 params: EncodeParams) -> np.ndarray:
    started = time.perf_counter()
    embedder = load_embedder(model_dir, embedding.pooling, params.precision)
    docids = list(corpus)
    vectors = encode(embedder, [corpus[d] for d in docids], embedding.passage_max_len, params.batch_size,
                     desc=f"{out_dir.name}: corpus")
    with atomic_dir(out_dir) as tmp:
        np.save(tmp / VECTORS, vectors)
        (tmp / DOCIDS).write_text("".join(f"{d}\n" for d in docids), encoding="utf-8")
    logger.info("embedded %s documents with %s in %.1fs -> %s", f"{len(docids):,}", model_dir,
                time.perf_counter() - started, out_dir)
    return vectors


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
    embed_corpus(args.model_dir, load_corpus(args.dataset_dir), args.out_dir, embedding, params)


if __name__ == "__main__":
    run_stage(main)
