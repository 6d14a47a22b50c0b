"""BM25: jieba's words through jieba-rs, term counts in a pool, bm25s's scores from them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import bm25s
import jieba
import numpy as np
import pytest
from conftest import CORPUS, ROOT, shipped_texts

from zh_retrieval.core.params import BM25Params
from zh_retrieval.retrieval.bm25 import TOKENIZERS, WORD, bigram_tokens, bm25_index, bm25_run, count_terms, jieba_tokens
from zh_retrieval.retrieval.metrics import score_run


def test_tokenizers_drop_punctuation_and_split_chinese() -> None:
    assert jieba_tokens("列出目录内容，并排序。") == ["列出", "目录", "内容", "并", "排序"]
    assert bigram_tokens("列出目录, ls -l") == ["列出", "出目", "目录", "ls", "l"]


def test_jieba_tokens_are_jiebas_own() -> None:
    """The jieba-rs tokenizer gives exactly the Python jieba's words (the tokens BM25 used before it)."""
    jieba.setLogLevel(logging.WARNING)
    texts = shipped_texts() + ["用 C++ 写 user-agent 和 utf-8，版本 3.14，增长 50%，AT&T 与 c# 的 x-www-form"]
    assert len(texts) > 2000
    mismatched = [t for t in texts if jieba_tokens(t) != [w for w in jieba.lcut(t.lower()) if WORD.search(w)]]
    assert not mismatched, mismatched[0][:200]


def test_counting_terms_in_a_pool_gives_what_one_process_gives() -> None:
    texts = shipped_texts()[:600]
    pooled = count_terms(iter(texts), "jieba", chunk_size=100, workers=2)
    alone = count_terms(texts, "jieba", chunk_size=len(texts), workers=1)
    assert pooled.vocabulary == alone.vocabulary
    for field in ("terms", "counts", "starts", "lengths"):
        np.testing.assert_array_equal(getattr(pooled, field), getattr(alone, field))
    words = {i: w for w, i in alone.vocabulary.items()}
    seventh = slice(alone.starts[7], alone.starts[8])
    counted = {words[int(t)]: int(c) for t, c in zip(alone.terms[seventh], alone.counts[seventh])}
    tokens = jieba_tokens(texts[7])
    assert counted == {t: tokens.count(t) for t in tokens} and alone.lengths[7] == len(tokens)


@pytest.mark.parametrize("tokenizer", ["jieba", "bigram"])
def test_bm25_index_scores_exactly_as_bm25s_own_index(tokenizer: str) -> None:
    """Our index (term counts, vectorised) gives bm25s.BM25.index's scores to the last bit, for every document."""
    texts = [json.loads(line)["text"] for line in (ROOT / "data" / "sample" / "corpus.jsonl").open(encoding="utf-8")]
    texts.append("？！")  # a text without a word: an empty document
    queries = [json.loads(line)["query"] for line in (ROOT / "data" / "sample" / "test.jsonl").open(encoding="utf-8")]
    tokenize = TOKENIZERS[tokenizer]
    params = BM25Params(tokenizer, 1.2, 0.6)
    ours = bm25_index(texts, params, chunk_size=200, workers=2)
    theirs = bm25s.BM25(k1=1.2, b=0.6, method="lucene")
    theirs.index([tokenize(t) for t in texts], show_progress=False)
    for query in queries[:60]:
        np.testing.assert_array_equal(ours.get_scores(tokenize(query)), theirs.get_scores(tokenize(query)))


@pytest.mark.parametrize("tokenizer", ["jieba", "bigram"])
def test_bm25_ranks_the_document_sharing_the_query_words_first(tokenizer: str) -> None:
    run = bm25_run(CORPUS, {"q": "删除文件", "r": "磁盘使用"}, BM25Params(tokenizer, 1.5, 0.75), top_k=3)
    assert max(run["q"], key=run["q"].get) == "d3"
    assert max(run["r"], key=run["r"].get) == "d4"
    assert all(len(scores) == 3 for scores in run.values())


@pytest.mark.parametrize("tokenizer", ["jieba", "bigram"])
def test_bm25_query_without_words_scores_zero(tokenizer: str, tmp_path: Path) -> None:
    queries = {"q": "删除文件", "punctuation": "？！……", "empty": ""}
    run = bm25_run(CORPUS, queries, BM25Params(tokenizer, 1.5, 0.75), top_k=3)
    assert run["punctuation"] == run["empty"] == {}
    assert max(run["q"], key=run["q"].get) == "d3"
    qrels = {"q": {"d3": 1}, "punctuation": {"d1": 1}, "empty": {"d2": 1}}
    metrics = score_run(qrels, run, (1, 3), tmp_path, "bm25")
    assert metrics["ndcg_at_1"] == pytest.approx(1 / 3), "the word-less queries count, with 0"
