"""What embed writes for one model, and how the stages after it read it.

    corpus.npy        float32, one unit vector per document (the document truncated at passage_max_len)
    docids.txt        the docid of each row
    passages.npy      MaxP only: float16, one vector per overlapping passage
    passage_doc.npy   MaxP only: the document row of each passage; a document's passages are contiguous
    encoding.json     {"precision": "bf16"}: what the vectors were computed in (`auto` resolves per machine)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from zh_retrieval.core.errors import InputError

VECTORS = "corpus.npy"
DOCIDS = "docids.txt"
PASSAGE_VECTORS = "passages.npy"
# fp16 keeps 11 significant bits per component, bf16-encoded vectors 8: bf16 vectors lose nothing in
# it, and it halves the memory of MLDR's ~2 M passages (docs/speed-and-memory.md measures MaxP's change).
PASSAGE_DTYPE = np.float16
PASSAGE_DOC = "passage_doc.npy"
ENCODING = "encoding.json"


def save_rows(path: Path, parts: list[np.ndarray]) -> None:
    """`np.save(path, np.concatenate(parts))` without holding the concatenated copy."""
    rows = sum(len(part) for part in parts)
    header = {"descr": np.lib.format.dtype_to_descr(parts[0].dtype), "fortran_order": False,
              "shape": (rows, *parts[0].shape[1:])}
    with path.open("wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for part in parts:
            f.write(np.ascontiguousarray(part).data)


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
