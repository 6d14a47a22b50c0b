"""The corpus as mining sees it: each document's passages, their vectors, and their texts.

The texts are the cut stage's spans (data/cut.py, the passages embed encoded), or, without a cut,
cut here on demand exactly as embed cuts them (same tokenizer, passage_max_len and overlap). The
count per document is checked against embed's passage vectors either way, so a passage index
always names the same text in train.jsonl as in the embeddings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from zh_retrieval.core.errors import InputError
from zh_retrieval.core.params import EmbeddingParams, LongDocumentParams
from zh_retrieval.data.cut import Cut, load_cut
from zh_retrieval.data.embeddings import load_corpus_embeddings, load_passage_embeddings
from zh_retrieval.data.passages import split_many


@dataclass
class PassageTexts:
    """Document row => its passages' texts, cut once and kept; `prefetch` cuts many rows in batches (faster)."""

    tokenizer: PreTrainedTokenizerBase
    documents: list[str]  # text of each document row
    passage_max_len: int
    overlap: int
    counts: np.ndarray  # passages per document row, as embed encoded them
    embeddings_dir: Path  # named in the error when a document cuts into another number of passages
    cut: Cut | None = None  # the cut stage's passages: their spans instead of cutting again
    cache: dict[int, list[str]] = field(default_factory=dict)

    def prefetch(self, rows: Iterable[int]) -> None:
        missing = sorted(set(rows) - self.cache.keys())
        if self.cut is not None:
            cuts = [self.cut.passage_texts(row, self.documents[row]) for row in missing]
        else:
            cuts = split_many(self.tokenizer, [self.documents[row] for row in missing], self.passage_max_len,
                              self.overlap)
        for row, cut in zip(missing, cuts):
            if len(cut) != self.counts[row]:
                raise InputError(self.embeddings_dir, f"document row {row} has {self.counts[row]} passage "
                                 f"embeddings but splits into {len(cut)} passages with these params",
                                 fix="re-run the embed stage with the same model and long_documents params")
            self.cache[row] = cut

    def of(self, row: int) -> list[str]:
        if row not in self.cache:
            self.prefetch([row])
        return self.cache[row]


@dataclass(frozen=True)
class Passages:
    """Every document's passages as embed cut and encoded them for MaxP."""

    vectors: np.ndarray  # one unit vector per passage
    doc_start: np.ndarray  # passage rows of document row r: doc_start[r] .. doc_start[r + 1] - 1
    texts: PassageTexts | None  # None: vectors only; train.jsonl's passage texts and BM25 positives need them

    @property
    def owners(self) -> np.ndarray:
        """The document row of each passage."""
        return np.repeat(np.arange(len(self.doc_start) - 1), np.diff(self.doc_start))

    def count(self, row: int) -> int:
        return int(self.doc_start[row + 1] - self.doc_start[row])

    def scores(self, row: int, query_vector: np.ndarray) -> np.ndarray:
        return self.vectors[self.doc_start[row] : self.doc_start[row + 1]] @ query_vector

    def best(self, row: int, query_vector: np.ndarray) -> int:
        """The index of the document's passage that scores highest for the query."""
        return int(np.argmax(self.scores(row, query_vector)))


def load_passages(tokenizer_dir: Path, embeddings_dir: Path, documents: list[str], embedding: EmbeddingParams,
                  long_documents: LongDocumentParams, cut_dir: Path | None = None) -> Passages:
    """embed's passage vectors for `documents` (in embed's row order), with their texts: the spans of the cut
    stage's output in `cut_dir`, or cut on demand without one."""
    loaded = load_passage_embeddings(embeddings_dir)
    if loaded is None:
        raise InputError(embeddings_dir, "no passage embeddings (passages.npy), which passage mining needs",
                         fix="set long_documents.maxp: true and re-run the embed stage")
    vectors, passage_doc = loaded
    counts = np.bincount(passage_doc, minlength=len(documents))
    doc_start = np.concatenate([[0], np.cumsum(counts)])
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)
    cut = None
    if cut_dir is not None:
        cut = load_cut(cut_dir, embedding.passage_max_len, long_documents.overlap)
        cut.check_tokenizer(tokenizer, tokenizer_dir)
        if cut.docids != load_corpus_embeddings(embeddings_dir)[0]:
            raise InputError(cut_dir, f"its documents are not those of {embeddings_dir}, in the same order",
                             fix="re-run the cut and embed stages on the same dataset")
    texts = PassageTexts(tokenizer, documents, embedding.passage_max_len, long_documents.overlap, counts,
                         embeddings_dir, cut)
    return Passages(vectors, doc_start, texts)
