"""Cutting documents into overlapping passages that fit the model."""

from __future__ import annotations

import pytest
from conftest import CORPUS, ROOT, TINY_MODEL, shipped_texts

from zh_retrieval.data import passages as passages_module
from zh_retrieval.data.passages import split_into_passages, split_many
from zh_retrieval.retrieval.encode import load_embedder


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
