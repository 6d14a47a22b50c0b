"""BM25 (`bm25s`, Lucene's variant) over Chinese words from jieba, or over character bigrams.

jieba's words come from `rjieba` (jieba-rs, the same dictionary and HMM, many times faster than
the Python jieba) with jieba's own rule for non-Chinese runs restored, so the tokens are exactly
`jieba.lcut`'s (tests/test_bm25.py checks both corpora that ship). The corpus streams
through a pool of processes, one per core, that turn each document into term counts, never a
list of strings (MLDR zh's tokens, as Python strings, would not fit the machine's memory);
bm25s's score matrix is computed from those counts with bm25s's own formulas, and bm25s searches
it. benchmarks/scale.py measures the stage at MLDR's size.
"""

from __future__ import annotations

import collections
import functools
import itertools
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import bm25s
import jieba
import numpy as np
import rjieba
import scipy.sparse
from bm25s.scoring import _select_idf_scorer, _select_tfc_scorer

from zh_retrieval.core.params import BM25Params
from zh_retrieval.data.mldr import iter_corpus

logger = logging.getLogger(__name__)

WORD = re.compile(r"\w", re.UNICODE)  # a token without a letter, digit or CJK character is punctuation
CJK_RUN = re.compile(r"[\u4e00-\u9fff]+|[^\W\u4e00-\u9fff]+", re.UNICODE)

HAN = re.compile("[\u4e00-\u9fd5]")  # jieba's range of Chinese characters
# How jieba's HMM step splits a run of characters that are not Chinese (jieba.finalseg.re_skip):
# jieba-rs keeps "user-agent" or "utf-8" whole where jieba gives "user", "-", "agent".
JIEBA_NON_HAN = re.compile(r"([a-zA-Z0-9]+(?:\.\d+)?%?)")
CHUNK_DOCUMENTS = 1000  # documents per task in the tokenizing pool

jieba.setLogLevel(logging.WARNING)


@functools.cache
def _dictionary_words_with_symbols() -> frozenset[str]:
    """Dictionary words like "c++" or "at&t", which jieba keeps whole: not split like other runs."""
    lines = jieba.get_dict_file().read().decode("utf-8").splitlines()
    words = (line.split(" ", 1)[0].lower() for line in lines)
    return frozenset(w for w in words if len(w) > 1 and not w.isalnum() and not HAN.search(w))


def jieba_words(text: str) -> list[str]:
    """`jieba.lcut(text)` (precise mode, HMM on), computed by jieba-rs."""
    keep = _dictionary_words_with_symbols()
    words = []
    for word in rjieba.cut(text):
        if len(word) > 1 and not word.isalnum() and word not in keep and not HAN.search(word):
            words.extend(piece for piece in JIEBA_NON_HAN.split(word) if piece)
        else:
            words.append(word)
    return words


def jieba_tokens(text: str) -> list[str]:
    # isalnum() first: the same test as WORD.search for most tokens, and much faster.
    return [t for t in jieba_words(text.lower()) if t.isalnum() or WORD.search(t)]


def bigram_tokens(text: str) -> list[str]:
    """Overlapping character bigrams inside runs of Chinese characters; other words whole."""
    tokens = []
    for run in CJK_RUN.findall(text.lower()):
        if "\u4e00" <= run[0] <= "\u9fff" and len(run) > 1:
            tokens.extend(run[i : i + 2] for i in range(len(run) - 1))
        else:
            tokens.append(run)
    return tokens


TOKENIZERS: dict[str, Callable[[str], list[str]]] = {"jieba": jieba_tokens, "bigram": bigram_tokens}


@dataclass
class TermCounts:
    """Each text's distinct tokens and how often each occurs: all BM25 needs, in flat int32 arrays."""

    vocabulary: dict[str, int]  # token => id
    terms: np.ndarray  # int32: the token id of each (text, distinct token) pair, text after text
    counts: np.ndarray  # int32: how often that token occurs in that text
    starts: np.ndarray  # int64: text i's pairs are starts[i]:starts[i + 1]
    lengths: np.ndarray  # int64: tokens per text


def _count_terms(tokenizer: str, texts: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray,
                                                                 np.ndarray]:
    """A pool task: (distinct tokens of the chunk, per-text term ids into them, counts, terms per text, lengths)."""
    tokenize = TOKENIZERS[tokenizer]
    vocabulary: dict[str, int] = {}
    terms, counts = [], []
    distinct = np.empty(len(texts), dtype=np.int64)
    lengths = np.empty(len(texts), dtype=np.int64)
    for n, text in enumerate(texts):
        tokens = tokenize(text)
        ids = np.fromiter((vocabulary.setdefault(t, len(vocabulary)) for t in tokens), dtype=np.int32,
                          count=len(tokens))
        text_terms, text_counts = np.unique(ids, return_counts=True)
        terms.append(text_terms)
        counts.append(text_counts.astype(np.int32))
        distinct[n], lengths[n] = len(text_terms), len(tokens)
    return (list(vocabulary), np.concatenate(terms), np.concatenate(counts), distinct, lengths)


def _pool_size() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _chunks(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(texts)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _pooled(tokenizer: str, chunks: Iterator[list[str]], workers: int) -> Iterator[tuple]:
    """`_count_terms` of each chunk, in order; in a pool of `workers` processes when there are two chunks or more.

    At most 2 x workers chunks are in flight, so a corpus streamed in is never held whole.
    """
    first, second = next(chunks, None), next(chunks, None)
    if second is None or workers < 2:
        yield from (_count_terms(tokenizer, chunk) for chunk in itertools.chain([first, second], chunks) if chunk)
        return
    # spawn, not fork: a forked child of a process with threads (torch's, in mine) may deadlock.
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        pending: collections.deque = collections.deque()
        for chunk in itertools.chain([first, second], chunks):
            pending.append(pool.submit(_count_terms, tokenizer, chunk))
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def count_terms(texts: Iterable[str], tokenizer: str, chunk_size: int = CHUNK_DOCUMENTS,
                workers: int | None = None) -> TermCounts:
    """Tokenize every text and count its terms, never holding a Python string per token.

    Chunks of `chunk_size` texts are tokenized in a pool of `workers` processes (default: one per
    core the process may use); ids are in order of first appearance either way, so the result
    does not depend on the pool. `texts` may be a stream: it is read as the pool needs it.
    """
    vocabulary: dict[str, int] = {}
    terms, counts, distinct, lengths = [], [], [], []
    for chunk_vocabulary, chunk_terms, chunk_counts, chunk_distinct, chunk_lengths in _pooled(
            tokenizer, _chunks(texts, chunk_size), workers or _pool_size()):
        to_global = np.array([vocabulary.setdefault(t, len(vocabulary)) for t in chunk_vocabulary] or [0],
                             dtype=np.int32)
        global_terms = to_global[chunk_terms]
        # Each text's terms in id order, whatever the chunk's own ids were: the same arrays with or without a pool.
        order = np.lexsort((global_terms, np.repeat(np.arange(len(chunk_distinct)), chunk_distinct)))
        terms.append(global_terms[order])
        counts.append(chunk_counts[order])
        distinct.append(chunk_distinct)
        lengths.append(chunk_lengths)

    def joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    starts = np.concatenate([[0], np.cumsum(joined(distinct, np.int64))]).astype(np.int64)
    return TermCounts(vocabulary, joined(terms, np.int32), joined(counts, np.int32), starts,
                      joined(lengths, np.int64))


def bm25_matrix(terms: TermCounts, retriever: bm25s.BM25, block: int = 1 << 24) -> dict[str, np.ndarray | int]:
    """bm25s's score matrix (`retriever.scores`), computed from term counts with bm25s's own formulas.

    The same numbers as `bm25s.BM25.index` (tests/test_bm25.py compares every score), built
    without its per-document Python loops and its list-of-ids input, which at MLDR's size takes
    more memory than the machine has (benchmarks/scale.py, docs/speed-and-memory.md). The
    formulas come from bm25s's private `_select_idf_scorer` and `_select_tfc_scorer`: bm25s is
    pinned, and the test fails if a new version changes them.
    """
    n_docs, n_vocab = len(terms.lengths), len(terms.vocabulary)
    average_length = terms.lengths.mean() if n_docs else np.float64(0)
    idf_of = _select_idf_scorer(retriever.idf_method)
    idf = np.array([idf_of(int(df), N=n_docs) if df else 0.0 for df in np.bincount(terms.terms, minlength=n_vocab)],
                   dtype=retriever.dtype)
    tfc_of = _select_tfc_scorer(retriever.method)
    text_of_pair = np.repeat(np.arange(n_docs), np.diff(terms.starts))
    scores = np.empty(len(terms.terms), dtype=retriever.dtype)
    for begin in range(0, len(scores), block):
        span = slice(begin, begin + block)
        tfc = tfc_of(tf_array=terms.counts[span].astype(retriever.dtype), l_d=terms.lengths[text_of_pair[span]],
                     l_avg=average_length, k1=retriever.k1, b=retriever.b, delta=retriever.delta)
        scores[span] = idf[terms.terms[span]] * tfc
    del text_of_pair
    matrix = scipy.sparse.csr_matrix((scores, terms.terms, terms.starts), shape=(n_docs, n_vocab)).tocsc()
    return {"data": matrix.data, "indices": matrix.indices, "indptr": matrix.indptr, "num_docs": n_docs}


def bm25_index(texts: Iterable[str], params: BM25Params, chunk_size: int = CHUNK_DOCUMENTS,
               workers: int | None = None) -> bm25s.BM25:
    """A bm25s index over `texts` (rows in their order), as `bm25s.BM25.index` builds it, ready to search."""
    terms = count_terms(texts, params.tokenizer, chunk_size, workers)
    retriever = bm25s.BM25(k1=params.k1, b=params.b, method="lucene")
    retriever.scores = bm25_matrix(terms, retriever)
    retriever.nonoccurrence_array = None  # lucene needs none
    vocabulary = terms.vocabulary
    vocabulary[""] = len(vocabulary)  # as index(create_empty_token=True) adds it
    retriever.vocab_dict = vocabulary
    retriever.unique_token_ids_set = set(vocabulary.values())
    return retriever


def bm25_search(retriever: bm25s.BM25, docids: list[str], queries: dict[str, str], tokenizer: str, top_k: int
                ) -> dict[str, dict[str, float]]:
    """query_id => {docid: BM25 score} for the top_k documents of each query; docids name the index's rows."""
    tokenize = TOKENIZERS[tokenizer]
    tokenized = {query_id: tokenize(text) for query_id, text in queries.items()}
    # A query with no word (punctuation only) retrieves nothing and scores 0, like any query whose
    # words are all missing from the corpus; bm25s itself cannot take an empty query.
    searchable = [query_id for query_id, tokens in tokenized.items() if tokens]
    run: dict[str, dict[str, float]] = {query_id: {} for query_id in queries}
    if searchable:
        rows, scores = retriever.retrieve([tokenized[q] for q in searchable], k=min(top_k, len(docids)),
                                          show_progress=False, n_threads=_pool_size())
        for n, query_id in enumerate(searchable):
            run[query_id] = {docids[int(i)]: float(s) for i, s in zip(rows[n], scores[n])}
    return run


def bm25_run(corpus: dict[str, str], queries: dict[str, str], params: BM25Params, top_k: int,
             chunk_size: int = CHUNK_DOCUMENTS, workers: int | None = None) -> dict[str, dict[str, float]]:
    """query_id => {docid: BM25 score} for the top_k documents of each query."""
    docids = list(corpus)
    retriever = bm25_index((corpus[d] for d in docids), params, chunk_size, workers)
    return bm25_search(retriever, docids, queries, params.tokenizer, top_k)


def streamed_index(dataset_dir: Path, params: BM25Params) -> tuple[bm25s.BM25, list[str]]:
    """(index, docid of each row) over a dataset's corpus, read as it is tokenized, never held whole (MLDR: 2.5 GB)."""
    docids: list[str] = []

    def texts() -> Iterator[str]:
        for docid, text in iter_corpus(dataset_dir):
            docids.append(docid)
            yield text

    return bm25_index(texts(), params), docids
