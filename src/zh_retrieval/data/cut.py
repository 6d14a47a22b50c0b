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
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tokenizers import Encoding, Tokenizer

if TYPE_CHECKING:  # only named in annotations: a cut worker process need not import transformers
    from transformers import PreTrainedTokenizerBase

from zh_retrieval.core.errors import InputError
from zh_retrieval.core.files import write_json
from zh_retrieval.data.passages import SPLIT_BATCH, window_ranges, window_spans

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


class TokenOffsets:
    """A tokenized text's character offsets, read from its Encoding one token at a time: `window_spans` reads only
    each window's ends, where converting every offset to Python (~850 M on MLDR zh) took most of the time."""

    def __init__(self, encoding: Encoding) -> None:
        self.encoding = encoding

    def __len__(self) -> int:
        return len(self.encoding)

    def __getitem__(self, token: int) -> tuple[int, int]:
        return self.encoding.token_to_chars(token)


def backend_tokenizers(tokenizer: PreTrainedTokenizerBase, max_length: int) -> tuple[Tokenizer, Tokenizer]:
    """Copies of the fast tokenizer's Rust backend: one without truncation (a whole document's tokens and offsets),
    one truncating at max_length with the specials added, as `tokenizer(..., truncation=True, max_length=...)`
    sets it up. Called directly, they skip transformers' conversion of every id, mask and offset to Python."""
    whole = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    whole.no_truncation()
    whole.no_padding()
    capped = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    capped.no_padding()
    capped.enable_truncation(max_length, stride=0, strategy="longest_first", direction=tokenizer.truncation_side)
    return whole, capped


def wordpiece_specials(tokenizer: PreTrainedTokenizerBase) -> tuple[int, int] | None:
    """([CLS], [SEP]) where the tokenizer is BERT's (WordPiece after BERT's normaliser and pre-tokeniser, one
    sequence wrapped as [CLS] ... [SEP]): there a window of a document's tokens is, with the exceptions
    `slice_is_retokenized` admits, exactly what tokenizing its text gives. None for any other tokenizer."""
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    kinds = tuple((backend.get(part) or {}).get("type") for part in ("normalizer", "pre_tokenizer", "model"))
    if kinds != ("BertNormalizer", "BertPreTokenizer", "WordPiece"):
        return None
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls is None or sep is None or tokenizer.build_inputs_with_special_tokens([7]) != [cls, 7, sep]:
        return None
    return cls, sep


def slice_is_retokenized(encoding: Encoding, start: int, end: int) -> bool:
    """Whether tokens [start, end) of a text are what its characters from token start's to token end - 1's give
    when tokenized alone (specials apart), for BERT's tokenizer. Normalising and splitting into words look at
    one character at a time, and WordPiece matches the longest vocabulary prefix of each word, left to right:
    a window that ends inside a word ends on a piece of it that the shorter word also begins with. A window
    that starts inside a word starts on a "##" piece, which the word cut there does not; and where two
    tokens share a character (one character normalised into two), the span takes both. So: the first token
    starts a word, and neither end shares a character with the token beside it."""
    if start > 0:
        if encoding.token_to_word(start) == encoding.token_to_word(start - 1):
            return False
        if encoding.token_to_chars(start - 1)[1] > encoding.token_to_chars(start)[0]:
            return False
    if end < len(encoding):
        if encoding.token_to_chars(end - 1)[1] > encoding.token_to_chars(end)[0]:
            return False
    return True


def passage_ids(encodings: Sequence[Encoding], doc_ids: Sequence[np.ndarray], texts: Sequence[str],
                ranges: Sequence[list[tuple[int, int]]], spans: Sequence[list[tuple[int, int]]], capped: Tokenizer,
                specials: tuple[int, int] | None) -> list[np.ndarray]:
    """Each passage's ids, specials included, as `capped` tokenizes its text: for BERT's tokenizer the window of
    the document's own tokens (`doc_ids`) wherever `slice_is_retokenized` says that is the same (nearly every
    window; a third of the tokenizing otherwise), the text tokenized again where not, or for any other tokenizer."""
    dtype = doc_ids[0].dtype if doc_ids else np.uint32
    out: list[np.ndarray | None] = []
    again: list[tuple[int, str]] = []
    for encoding, ids, text, doc_ranges, doc_spans in zip(encodings, doc_ids, texts, ranges, spans, strict=True):
        for (start, end), (first, last) in zip(doc_ranges, doc_spans, strict=True):
            if specials is not None and slice_is_retokenized(encoding, start, end):
                out.append(with_specials(ids[start:end], specials))
            else:
                again.append((len(out), text[first:last]))
                out.append(None)
    for (row, _), encoding in zip(again, capped.encode_batch([piece for _, piece in again]), strict=True):
        out[row] = np.array(encoding.ids, dtype=dtype)
    return out  # type: ignore[return-value]  # every None was filled


def with_specials(ids: np.ndarray, specials: tuple[int, int]) -> np.ndarray:
    """[CLS] ids [SEP]."""
    wrapped = np.empty(len(ids) + 2, dtype=ids.dtype)
    wrapped[0], wrapped[1:-1], wrapped[-1] = specials[0], ids, specials[1]
    return wrapped


def truncated_ids(encoding: Encoding, ids: np.ndarray, capped: Tokenizer, specials: tuple[int, int] | None,
                  window: int) -> np.ndarray:
    """The document as `capped` tokenizes it (truncated, specials added), from its own tokens: for BERT's
    tokenizer its first `window` ids wrapped in [CLS] and [SEP], which is what truncating one sequence on the
    right and adding BERT's template does; for any other, the tokenizer's own post-processor on the encoding,
    which truncates and adds specials as tokenizing with truncation does (and copies every token's offsets:
    the slower way)."""
    if specials is not None and capped.truncation["direction"] == "right":
        return with_specials(ids[:window], specials)
    return np.array(capped.post_process(encoding).ids, dtype=ids.dtype)


@dataclass(frozen=True)
class BatchCut:
    """One batch of documents cut: its passages' ids (concatenated) and lengths, their spans, how many passages
    each document has, and its truncated document where that is not its first passage (None where it is)."""
    ids: np.ndarray
    lengths: np.ndarray
    spans: np.ndarray
    passage_counts: np.ndarray
    truncated_apart: list[np.ndarray | None]


@dataclass(frozen=True)
class Cutter:
    """What cutting a batch needs, picklable, so that a worker process cuts its batches as this process would."""
    whole: Tokenizer
    capped: Tokenizer
    specials: tuple[int, int] | None
    window: int
    overlap: int
    dtype: str

    def batch(self, texts: list[str]) -> BatchCut:
        encodings = self.whole.encode_batch(texts, add_special_tokens=False)
        doc_ids = [np.array(encoding.ids, dtype=self.dtype) for encoding in encodings]
        ranges = [window_ranges(len(encoding), self.window, self.overlap) for encoding in encodings]
        spans = [window_spans(TokenOffsets(encoding), len(text), self.window, self.overlap)
                 for text, encoding in zip(texts, encodings, strict=True)]
        pieces = passage_ids(encodings, doc_ids, texts, ranges, spans, self.capped, self.specials)
        apart: list[np.ndarray | None] = []
        position = 0
        for encoding, ids, doc_spans in zip(encodings, doc_ids, spans, strict=True):
            doc_truncated = truncated_ids(encoding, ids, self.capped, self.specials, self.window)
            apart.append(None if np.array_equal(pieces[position], doc_truncated) else doc_truncated)
            position += len(doc_spans)
        return BatchCut(np.concatenate(pieces) if pieces else np.zeros(0, dtype=self.dtype),
                        np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces)),
                        np.array([span for doc in spans for span in doc], dtype=np.int64).reshape(-1, 2),
                        np.array([len(doc) for doc in spans], dtype=np.int64), apart)


_worker_cutter: Cutter | None = None


def _start_worker(cutter: Cutter) -> None:
    # One single-threaded tokenizer per process: a process per core already fills them, and the Rust pool is
    # built at its first batch, after this.
    os.environ["RAYON_NUM_THREADS"] = os.environ["RAYON_RS_NUM_CPUS"] = "1"
    global _worker_cutter
    _worker_cutter = cutter


def _cut_in_worker(texts: list[str]) -> BatchCut:
    assert _worker_cutter is not None, "started by _start_worker"
    return _worker_cutter.batch(texts)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cut_batches(cutter: Cutter, corpus: Sequence[tuple[str, str]], size: int, workers: int) -> Iterator[BatchCut]:
    """Each batch of `size` documents cut, in order. With two workers or more, in that many processes, each
    tokenizing on one core: the cut's Python part (slicing windows, comparing truncated documents) then runs
    on every core too, where one process with the Rust tokenizer on all of them left it on one (1.68x from 1
    core to 2, docs/speed-and-memory.md). The output is the same whatever the count (tests/test_cut.py)."""
    batches = [[text for _, text in corpus[begin : begin + size]] for begin in range(0, len(corpus), size)]
    if workers < 2 or len(batches) < 2:
        yield from map(cutter.batch, batches)
        return
    with ProcessPoolExecutor(min(workers, len(batches)), mp_context=get_context("spawn"), initializer=_start_worker,
                             initargs=(cutter,)) as pool:
        yield from pool.map(_cut_in_worker, batches)


def cut_documents(tokenizer: PreTrainedTokenizerBase, corpus: Sequence[tuple[str, str]], passage_max_len: int,
                  overlap: int, workers: int | None = None) -> Cut:
    """Cut every (docid, text) into passages and tokenize each passage, SPLIT_BATCH texts a call, in `workers`
    processes (default: one per usable core): each document is tokenized once, and only the ids kept and the
    windows' ends come back to Python, the ids as NumPy arrays (MLDR zh's ~1 G ids as Python ints would take
    tens of GiB)."""
    whole, capped = backend_tokenizers(tokenizer, passage_max_len)
    cutter = Cutter(whole, capped, wordpiece_specials(tokenizer),
                    passage_max_len - tokenizer.num_special_tokens_to_add(pair=False), overlap,
                    "uint16" if len(tokenizer) <= 2**16 else "uint32")
    # Per batch, as arrays: MLDR's 2 M passages never become 2 M live arrays and tuples.
    batches = list(cut_batches(cutter, corpus, SPLIT_BATCH, usable_cores() if workers is None else workers))
    passage_counts = np.concatenate([batch.passage_counts for batch in batches]) if batches else np.zeros(0, np.int64)
    first_passage = np.cumsum(passage_counts) - passage_counts
    passages = int(passage_counts.sum())
    # Truncated documents whose ids differ from their first passage's follow the passages, in document order.
    extra = [ids for batch in batches for ids in batch.truncated_apart if ids is not None]
    is_apart = np.array([ids is not None for batch in batches for ids in batch.truncated_apart], dtype=bool)
    truncated_rows = first_passage.copy()
    truncated_rows[is_apart] = passages + np.arange(len(extra), dtype=np.int64)
    dtype = np.dtype(cutter.dtype)
    ids = np.concatenate([*(batch.ids for batch in batches), *extra]) if batches else np.zeros(0, dtype=dtype)
    lengths = np.concatenate([*(batch.lengths for batch in batches),
                              np.fromiter(map(len, extra), dtype=np.int64, count=len(extra))])
    spans = np.concatenate([batch.spans for batch in batches]) if batches else np.zeros((0, 2), dtype=np.int64)
    owners = np.repeat(np.arange(len(corpus), dtype=np.int64), passage_counts)
    info = {"tokenizer": tokenizer_fingerprint(tokenizer), "passage_max_len": passage_max_len, "overlap": overlap,
            "documents": len(corpus), "passages": passages, "truncated_apart": len(extra), "dtype": str(ids.dtype)}
    return Cut([docid for docid, _ in corpus], spans.reshape(-1, 2), owners, ids,
               np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), truncated_rows,
               np.array([len(text) for _, text in corpus], dtype=np.int64), info)


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
    # Mapped, not read: mine, reranker_groups, rerank and the report use the spans and passage_doc only, and the
    # ids (~2 GB at MLDR zh's size) then stay on disk; embed pages in the ids of each batch it pads. Viewed as
    # plain arrays: a memmap's slicing runs Python code per slice, millions of times in embed at that size.
    arrays = [np.load(cut_dir / name, allow_pickle=False, mmap_mode="r").view(np.ndarray) for name in ARRAYS]
    docids = (cut_dir / DOCIDS).read_text(encoding="utf-8").splitlines()
    return Cut(docids, *arrays, info, source=cut_dir)


def is_cut(directory: Path) -> bool:
    return (directory / INFO).is_file()
