"""Exact search over documents and MaxP over passages, on vectors small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest

from zh_retrieval.retrieval.search import maxp_search, search


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


def assert_same_top_k_apart_from_ties(expected: tuple[np.ndarray, np.ndarray], got: tuple[np.ndarray, np.ndarray],
                                      atol: float = 1e-5) -> None:
    """The same scores rank by rank; the same rows wherever a score is not tied with another (within atol)."""
    (expected_scores, expected_rows), (got_scores, got_rows) = expected, got
    assert got_rows.shape == expected_rows.shape and got_rows.dtype == np.int64
    np.testing.assert_allclose(got_scores, expected_scores, atol=atol)
    for n in range(len(expected_rows)):
        row_scores = expected_scores[n]
        for j, score in enumerate(row_scores):
            if np.sum(np.abs(row_scores - score) <= atol) == 1:
                assert got_rows[n, j] == expected_rows[n, j], (n, j)
        # A tie at the cut-off may admit another of the tied rows; above it, the sets agree.
        untied = np.abs(row_scores - row_scores[-1]) > atol
        assert set(got_rows[n][untied]) == set(expected_rows[n][untied])


def test_torch_search_on_the_cpu_gives_faiss_top_k_apart_from_ties() -> None:
    from zh_retrieval.retrieval.search import torch_search

    rng = np.random.default_rng(3)
    corpus = rng.normal(size=(300, 24)).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    corpus[7] = corpus[8] = corpus[9]  # exact ties: their order is either's to choose
    queries = np.concatenate([corpus[[9, 40]], rng.normal(size=(11, 24)).astype(np.float32)])
    expected = search(corpus, queries, 20, device=None)
    # Small blocks and query batches: the per-block top k merged across blocks is the corpus's top k.
    assert_same_top_k_apart_from_ties(expected, torch_search(corpus, queries, 20, "cpu", batch_size=4, block_rows=37))
    assert_same_top_k_apart_from_ties(expected, torch_search(corpus, queries, 20, "cpu"))
    # fp16 storage, widened per block as faiss's caller widens it.
    half = corpus.astype(np.float16)
    assert_same_top_k_apart_from_ties(search(half.astype(np.float32), queries, 20, device=None),
                                      torch_search(half, queries, 20, "cpu", block_rows=50))
    # More k than documents, and no queries at all.
    assert torch_search(corpus[:5], queries, 20, "cpu")[1].shape == (13, 5)
    assert torch_search(corpus, queries[:0], 20, "cpu")[1].shape == (0, 20)


def test_torch_maxp_search_on_the_cpu_gives_numpy_top_k_apart_from_ties() -> None:
    from zh_retrieval.retrieval.search import torch_maxp_search

    rng = np.random.default_rng(4)
    passage_doc = np.repeat(np.arange(80), rng.integers(1, 9, size=80))
    passages = rng.normal(size=(len(passage_doc), 16)).astype(np.float32)
    passages /= np.linalg.norm(passages, axis=1, keepdims=True)
    queries = passages[rng.choice(len(passages), 10)] + 0.3 * rng.normal(size=(10, 16)).astype(np.float32)
    expected = maxp_search(passages, passage_doc, queries, 15, device=None)
    for block_rows in (None, 1, 29):  # a block may split a document: its maximum is taken across blocks
        got = torch_maxp_search(passages, passage_doc, queries, 15, "cpu", batch_size=3, block_rows=block_rows)
        assert_same_top_k_apart_from_ties(expected, got)
    # Documents are numbered by their runs of passages, whatever ids passage_doc carries.
    renumbered = passage_doc * 3 + 100
    assert_same_top_k_apart_from_ties(expected, torch_maxp_search(passages, renumbered, queries, 15, "cpu"))


def test_search_runs_on_the_cpu_without_a_gpu() -> None:
    """The default device is a GPU only when torch sees one: here, the CPU's faiss and numpy."""
    import torch

    from zh_retrieval.retrieval.search import AUTO, search_device

    assert search_device(AUTO) == ("cuda:0" if torch.cuda.is_available() else None)
    assert search_device("cpu") == "cpu" and search_device(None) is None
