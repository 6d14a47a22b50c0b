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
