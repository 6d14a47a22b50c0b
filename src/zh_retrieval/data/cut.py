"""Every document cut into passages once per tokenizer, with each passage's token ids: what the models read.

The `cut` stage writes it once; `embed` for every model (base, fine-tuned and merged share one
tokenizer), `mine`, `rerank` and `report` read it instead of tokenizing and cutting again.

    docids.txt       the docid of each document row, in the corpus's order
    spans.npy        int64 (passages, 2): each passage's character span in its document
    passage_doc.npy  int64: the document row of each passage; a document's passages are contiguous
    ids.npy          uint16 (uint32 past 65,536 words): every sequence's input ids, specials included
    starts.npy       int64 (sequences + 1): sequence i is ids[starts[i]:starts[i + 1]]
    truncated.npy    int64: per document row, the sequence that is the document truncated at
                     passage_max_len (what a model reads without MaxP); passage 0's where the ids
                     are the same, else one of the sequences after the passages
    doc_chars.npy    int64: each document's length in characters (the order encoding batches it in)
    cut.json         the tokenizer's fingerprint, passage_max_len, overlap and the counts

The passages are the ones `data/passages.py` cuts (token windows mapped back to character spans),
and each passage's ids are its text tokenized as the encoder tokenizes it, so encoding the ids
gives the vectors encoding the texts gives (tests/test_cut.py compares them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerBase

from zh_retrieval.core.errors import InputError
from zh_retrieval.core.files import write_json
from zh_retrieval.data.passages import SPLIT_BATCH, window_spans

DOCIDS, SPANS, PASSAGE_DOC, IDS, STARTS, TRUNCATED, DOC_CHARS, INFO = (
    "docids.txt", "spans.npy", "passage_doc.npy", "ids.npy", "starts.npy", "truncated.npy", "doc_chars.npy",
    "cut.json")
ARRAYS = (SPANS, PASSAGE_DOC, IDS, STARTS, TRUNCATED, DOC_CHARS)


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """sha256 of what the tokenizer does: its tokenizer.json (vocabulary, normaliser, pre-tokeniser, post-processor)
    in canonical form, without the padding and truncation settings that `save_pretrained` rewrites. The files
    themselves change bytes when a fine-tuned model is saved, while the tokenizer stays the same."""
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    backend.pop("padding", None)
    backend.pop("truncation", None)
    return hashlib.sha256(json.dumps(backend, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True)
class Cut:
    docids: list[str]
    spans: np.ndarray
    passage_doc: np.ndarray
    ids: np.ndarray
    starts: np.ndarray
    truncated: np.ndarray
    doc_chars: np.ndarray
    info: dict
    source: Path | None = None  # the directory it was loaded from, named in errors

    @property
    def doc_start(self) -> np.ndarray:
        """Passage rows of document row r: doc_start[r] .. doc_start[r + 1] - 1."""
        counts = np.bincount(self.passage_doc, minlength=len(self.docids))
        return np.concatenate([[0], np.cumsum(counts)])

    def sequence(self, index: int) -> np.ndarray:
        return self.ids[self.starts[index] : self.starts[index + 1]]

    def passage_texts(self, row: int, document: str) -> list[str]:
        first, end = np.searchsorted(self.passage_doc, [row, row + 1])
        return [document[start:stop] for start, stop in self.spans[first:end]]

    def check_tokenizer(self, tokenizer: PreTrainedTokenizerBase, model_dir: Path) -> None:
        """Stop unless `tokenizer` (model_dir's) is the one the passages were cut with: ids are never read silently
        with another vocabulary."""
        if tokenizer_fingerprint(tokenizer) != self.info["tokenizer"]:
            raise InputError(self.source or "the cut passages", f"its passages were cut with another tokenizer "
                             f"than {model_dir}'s", fix="re-run the cut stage with this model's tokenizer")


def cut_documents(tokenizer: PreTrainedTokenizerBase, corpus: Sequence[tuple[str, str]], passage_max_len: int,
                  overlap: int) -> Cut:
    """Cut every (docid, text) into passages and tokenize each passage, SPLIT_BATCH texts a tokenizer call (the
    fast tokenizer runs a batch on every core)."""
    window = passage_max_len - tokenizer.num_special_tokens_to_add(pair=False)
    spans: list[tuple[int, int]] = []
    owners: list[int] = []
    sequences: list[list[int]] = []
    extra: list[list[int]] = []  # truncated documents whose ids differ from their first passage's
    truncated_of: list[int] = []  # per document: its passage-0 sequence, or -(1 + index into extra)
    for begin in range(0, len(corpus), SPLIT_BATCH):
        texts = [text for _, text in corpus[begin : begin + SPLIT_BATCH]]
        whole = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, truncation=False,
                          verbose=False)
        truncated = tokenizer(texts, truncation=True, max_length=passage_max_len, verbose=False)["input_ids"]
        batch_spans = [window_spans(offsets, len(text), window, overlap)
                       for text, offsets in zip(texts, whole["offset_mapping"])]
        pieces = [text[start:end] for text, doc_spans in zip(texts, batch_spans) for start, end in doc_spans]
        piece_ids = tokenizer(pieces, truncation=True, max_length=passage_max_len, verbose=False)["input_ids"]
        position = 0
        for offset, (doc_spans, doc_truncated) in enumerate(zip(batch_spans, truncated)):
            first = len(sequences) + position
            if piece_ids[position] == doc_truncated:
                truncated_of.append(first)
            else:
                truncated_of.append(-1 - len(extra))
                extra.append(doc_truncated)
            owners.extend([begin + offset] * len(doc_spans))
            spans.extend(doc_spans)
            position += len(doc_spans)
        sequences.extend(piece_ids)
    passages = len(sequences)
    truncated_rows = np.array([t if t >= 0 else passages - 1 - t for t in truncated_of], dtype=np.int64)
    everything = sequences + extra
    dtype = np.uint16 if len(tokenizer) <= 2**16 else np.uint32
    lengths = np.array([len(s) for s in everything], dtype=np.int64)
    ids = np.fromiter((i for s in everything for i in s), dtype=dtype, count=int(lengths.sum()))
    info = {"tokenizer": tokenizer_fingerprint(tokenizer), "passage_max_len": passage_max_len, "overlap": overlap,
            "documents": len(corpus), "passages": passages, "truncated_apart": len(extra), "dtype": str(ids.dtype)}
    return Cut([docid for docid, _ in corpus], np.array(spans, dtype=np.int64).reshape(-1, 2),
               np.array(owners, dtype=np.int64), ids, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
               truncated_rows, np.array([len(text) for _, text in corpus], dtype=np.int64), info)


def save_cut(cut: Cut, out_dir: Path) -> None:
    """Into an existing (temporary) directory."""
    (out_dir / DOCIDS).write_text("".join(f"{d}\n" for d in cut.docids), encoding="utf-8")
    for name, array in zip(ARRAYS, (cut.spans, cut.passage_doc, cut.ids, cut.starts, cut.truncated, cut.doc_chars),
                           strict=True):
        np.save(out_dir / name, array)
    write_json(out_dir / INFO, cut.info)


def load_cut(cut_dir: Path, passage_max_len: int, overlap: int) -> Cut:
    """The cut stage's output, checked against the params the reader expects."""
    info_path = cut_dir / INFO
    if not info_path.is_file():
        raise InputError(info_path, "file not found", fix="run the cut stage first")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if (info["passage_max_len"], info["overlap"]) != (passage_max_len, overlap):
        raise InputError(cut_dir, f"cut at passage_max_len {info['passage_max_len']}, overlap {info['overlap']}; "
                         f"the params say {passage_max_len}, {overlap}", fix="re-run the cut stage")
    arrays = [np.load(cut_dir / name, allow_pickle=False) for name in ARRAYS]
    docids = (cut_dir / DOCIDS).read_text(encoding="utf-8").splitlines()
    return Cut(docids, *arrays, info, source=cut_dir)


def is_cut(directory: Path) -> bool:
    return (directory / INFO).is_file()
