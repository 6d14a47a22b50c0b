"""BM25, fusion, MaxP and the per-query comparison, on cases small enough to check by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CORPUS, TINY_MODEL

from zh_retrieval.bm25 import bigram_tokens, bm25_run, jieba_tokens
from zh_retrieval.compare import compare, read_per_query, summary
from zh_retrieval.embed import embed_corpus, load_corpus_embeddings, load_passage_embeddings
from zh_retrieval.encode import load_embedder
from zh_retrieval.hybrid import reciprocal_rank_fusion, top, weighted_fusion
from zh_retrieval.metrics import score_run
from zh_retrieval.params import BM25Params, EmbeddingParams, EncodeParams, LongDocumentParams
from zh_retrieval.passages import split_into_passages
from zh_retrieval.search import maxp_search, search


def test_tokenizers_drop_punctuation_and_split_chinese() -> None:
    assert jieba_tokens("列出目录内容，并排序。") == ["列出", "目录", "内容", "并", "排序"]
    assert bigram_tokens("列出目录, ls -l") == ["列出", "出目", "目录", "ls", "l"]


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
