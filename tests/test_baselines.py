"""BM25, fusion, MaxP and the per-query comparison, on cases small enough to check by hand."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import bm25s
import jieba
import numpy as np
import pytest
from conftest import CORPUS, ROOT, TINY_MODEL

from zh_retrieval import passages as passages_module
from zh_retrieval.bm25 import TOKENIZERS, WORD, bigram_tokens, bm25_index, bm25_run, count_terms, jieba_tokens
from zh_retrieval.compare import compare, read_per_query, summary
from zh_retrieval.embed import embed_corpus, load_corpus_embeddings, load_passage_embeddings
from zh_retrieval.encode import load_embedder
from zh_retrieval.hybrid import reciprocal_rank_fusion, top, weighted_fusion
from zh_retrieval.metrics import score_run
from zh_retrieval.params import BM25Params, EmbeddingParams, EncodeParams, LongDocumentParams
from zh_retrieval.passages import split_into_passages, split_many
from zh_retrieval.search import maxp_search, search


def test_tokenizers_drop_punctuation_and_split_chinese() -> None:
    assert jieba_tokens("列出目录内容，并排序。") == ["列出", "目录", "内容", "并", "排序"]
    assert bigram_tokens("列出目录, ls -l") == ["列出", "出目", "目录", "ls", "l"]


def shipped_texts() -> list[str]:
    """Every document and query of the two datasets that ship: the text BM25 tokenizes in the demo."""
    texts = []
    for dataset in ("sample", "general"):
        for path in sorted((ROOT / "data" / dataset).glob("*.jsonl")):
            rows = [json.loads(line) for line in path.open(encoding="utf-8")]
            texts += [row["text"] if "text" in row else row["query"] for row in rows]
    return texts


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


def test_reciprocal_rank_fusion_by_hand() -> None:
    dense = {"q": {"a": 0.9, "b": 0.8}}
    sparse = {"q": {"b": 12.0, "c": 3.0}}
    fused = reciprocal_rank_fusion([dense, sparse], rrf_k=60)["q"]
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["a"] == pytest.approx(1 / 61) and fused["c"] == pytest.approx(1 / 62)


def test_weighted_fusion_normalises_each_run() -> None:
    dense = {"q": {"a": 0.9, "b": 0.5}}
    sparse = {"q": {"b": 20.0, "c": 10.0}}
    fused = weighted_fusion(dense, sparse, dense_weight=0.25)["q"]
    assert fused == pytest.approx({"a": 0.25, "b": 0.75, "c": 0.0})
    assert list(top({"q": fused}, 2)["q"]) == ["b", "a"]


def test_maxp_scores_a_document_by_its_best_passage() -> None:
    passages = np.array([[1, 0], [0, 1], [0.6, 0.8], [0.8, 0.6]], dtype=np.float32)
    passage_doc = np.array([0, 0, 1, 2])
    query = np.array([[0, 1]], dtype=np.float32)
    scores, rows = maxp_search(passages, passage_doc, query, top_k=3)
    assert rows.tolist() == [[0, 1, 2]]
    assert scores[0] == pytest.approx([1.0, 0.8, 0.6])
    # With one passage per document, MaxP is plain search.
    single = np.array([0, 1, 2, 3])
    np.testing.assert_array_equal(maxp_search(passages, single, query, 4)[1], search(passages, query, 4)[1])


def test_maxp_with_one_passage_per_document_is_plain_search() -> None:
    rng = np.random.default_rng(0)
    corpus = rng.normal(size=(50, 16)).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    queries = corpus[:7] + 0.3 * rng.normal(size=(7, 16)).astype(np.float32)
    plain_scores, plain_rows = search(corpus, queries, 10)
    maxp_scores, maxp_rows = maxp_search(corpus, np.arange(50), queries, 10)
    np.testing.assert_array_equal(plain_rows, maxp_rows)
    np.testing.assert_allclose(plain_scores, maxp_scores, atol=1e-5)


def test_maxp_in_blocks_and_in_fp16_ranks_as_one_fp32_product() -> None:
    """Blocks of passages (whole documents each) and fp16 storage change no ranking beyond fp16's rounding."""
    rng = np.random.default_rng(1)
    passage_doc = np.repeat(np.arange(60), rng.integers(1, 9, size=60))
    passages = rng.normal(size=(len(passage_doc), 32)).astype(np.float32)
    passages /= np.linalg.norm(passages, axis=1, keepdims=True)
    queries = passages[rng.choice(len(passages), 9)] + 0.5 * rng.normal(size=(9, 32)).astype(np.float32)
    by_hand = np.stack([[(passages[passage_doc == d] @ q).max() for d in range(60)] for q in queries])
    expected_rows = np.argsort(-by_hand, axis=1, kind="stable")[:, :10]
    scores, rows = maxp_search(passages, passage_doc, queries, 10, batch_size=4, passage_block=5)
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_allclose(scores, np.take_along_axis(by_hand, expected_rows, axis=1), rtol=1e-5)
    half_scores, _ = maxp_search(passages.astype(np.float16), passage_doc, queries, 10)
    assert np.abs(half_scores - scores).max() < 2e-3  # fp16 keeps 11 significant bits: ~5e-4 per component


def test_passages_overlap_cover_the_text_and_fit_the_model() -> None:
    tokenizer = load_embedder(TINY_MODEL, "mean").tokenizer
    text = "".join(CORPUS.values()) * 8  # ~400 characters, one token each
    passages = split_into_passages(tokenizer, text, max_length=66, overlap=16)
    assert len(passages) > 5
    assert text.startswith(passages[0]) and text.endswith(passages[-1])
    for earlier, later in zip(passages, passages[1:]):
        assert later[:16] == earlier[-16:], "consecutive passages share `overlap` tokens"
    assert all(len(tokenizer(p)["input_ids"]) <= 66 for p in passages)
    assert split_into_passages(tokenizer, "短文本", max_length=66, overlap=16) == ["短文本"]


def test_passages_cut_in_batches_are_those_cut_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizer = load_embedder(ROOT / "models" / "zh-mini-embedder", "mean").tokenizer
    texts = [t for t in shipped_texts() if len(t) > 300][:40]
    one_by_one = [split_into_passages(tokenizer, t, max_length=128, overlap=16) for t in texts]
    monkeypatch.setattr(passages_module, "SPLIT_BATCH", 7)
    assert split_many(tokenizer, texts, max_length=128, overlap=16) == one_by_one
    assert sum(len(p) for p in one_by_one) > 2 * len(texts)


def test_per_query_file_and_comparison(tmp_path: Path) -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 1}}
    before = {"q1": {"a": 0.9, "x": 0.1}, "q2": {"x": 0.9, "b": 0.1}, "q3": {"c": 0.5}}
    after = {"q1": {"x": 0.9, "a": 0.1}, "q2": {"b": 0.9, "x": 0.1}, "q3": {"c": 0.5}}
    for name, run in (("before", before), ("after", after)):
        (tmp_path / name).mkdir()
        score_run(qrels, run, (1, 10), tmp_path / name, name)
    rows = [json.loads(line) for line in (tmp_path / "before" / "per_query.jsonl").read_text().splitlines()]
    assert [(r["query_id"], r["first_relevant_rank"], r["recall_at_1"]) for r in rows] == [
        ("q1", 1, 1.0), ("q2", 2, 0.0), ("q3", 1, 1.0)]
    changes = compare(read_per_query(tmp_path / "before"), read_per_query(tmp_path / "after"), "recall_at_1")
    assert [(c.query_id, c.delta, c.rank_before, c.rank_after) for c in changes] == [
        ("q2", 1.0, 2, 1), ("q3", 0.0, 1, 1), ("q1", -1.0, 1, 2)]
    assert summary(changes) == {"improved": 1, "unchanged": 1, "degraded": 1}


@pytest.mark.parametrize("maxp", [False, True])
def test_embedding_in_chunks_matches_one_pass(tmp_path: Path, maxp: bool) -> None:
    corpus = {f"{d}-{i}": text * (1 + 30 * i) for i in range(3) for d, text in CORPUS.items()}
    embedding = EmbeddingParams(pooling="mean", query_instruction="", query_max_len=32, passage_max_len=66)
    encoding = EncodeParams(batch_size=4, precision="fp32")
    long_documents = LongDocumentParams(maxp=maxp, overlap=8)
    whole = embed_corpus(TINY_MODEL, corpus.items(), tmp_path / "whole", embedding, encoding, long_documents)
    chunked = embed_corpus(TINY_MODEL, corpus.items(), tmp_path / "chunked", embedding, encoding, long_documents,
                           chunk_size=4)
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
    docids, vectors = load_corpus_embeddings(tmp_path / "chunked")
    assert docids == list(corpus) and vectors.shape == (len(corpus), 128)
    passages = load_passage_embeddings(tmp_path / "chunked")
    if maxp:
        passage_vectors, passage_doc = passages
        assert passage_doc[0] == 0 and passage_doc[-1] == len(corpus) - 1 and len(passage_doc) > len(corpus)
        np.testing.assert_array_equal(np.unique(passage_doc), np.arange(len(corpus)))
        np.testing.assert_allclose(passage_vectors, load_passage_embeddings(tmp_path / "whole")[0], atol=1e-5)
    else:
        assert passages is None


def test_several_devices_encode_what_one_does(tmp_path: Path) -> None:
    """Two worker processes (on the CPU here, one per GPU on a GPU machine) give the one-process vectors."""
    corpus = {f"{d}-{i}": text * (1 + 7 * i) for i in range(4) for d, text in CORPUS.items()}
    embedding = EmbeddingParams(pooling="mean", query_instruction="", query_max_len=32, passage_max_len=66)
    encoding = EncodeParams(batch_size=3, precision="fp32")
    long_documents = LongDocumentParams(maxp=True, overlap=8)
    one = embed_corpus(TINY_MODEL, corpus.items(), tmp_path / "one", embedding, encoding, long_documents,
                       devices=["cpu"])
    two = embed_corpus(TINY_MODEL, corpus.items(), tmp_path / "two", embedding, encoding, long_documents,
                       chunk_size=10, devices=["cpu", "cpu"])
    np.testing.assert_allclose(two, one, atol=1e-5)
    np.testing.assert_allclose(load_passage_embeddings(tmp_path / "two")[0],
                               load_passage_embeddings(tmp_path / "one")[0], atol=1e-5)
