"""Odd but valid text is kept: characters outside the Basic Multilingual Plane, zero-width and full-width
characters, traditional Chinese, and a 5,000-character query, through the functions the stages use.

The fault: a corpus and queries written by someone else's scraper. Checked: prepare writes every query
back character for character; a long document's passages cover every character of it; a query is
truncated only at `embedding.query_max_len` tokens; BM25 finds each odd document by its own script.
The 10 MB document goes through the stages themselves in tests/faults/ (`make faults`): tokenizing it
alone takes 15 s.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_MODEL, write_lines
from transformers import AutoTokenizer

from zh_retrieval.core.params import BM25Params, PrepareParams
from zh_retrieval.data.mldr import load_corpus
from zh_retrieval.data.passages import split_many
from zh_retrieval.data.preparation import prepare
from zh_retrieval.retrieval.bm25 import bm25_run
from zh_retrieval.retrieval.encode import encode, load_embedder

ODD_DOCUMENTS = {
    "beyond_bmp": "生僻字𠀀和𪚥见于扩展B区，表情😀也在补充平面",
    "zero_width": "零\u200b宽\u200d字\ufeff符不可见但仍在文本里",
    "full_width": "ＡＢＣ１２３是全角字母和数字，（括号）也是",
    "traditional": "繁體中文的檔案與軟體設定說明",
}
LONG_QUERY_CHARACTERS = 5000


def tokenizer_characters() -> list[str]:
    tokenizer = AutoTokenizer.from_pretrained(TINY_MODEL)
    return sorted(t for t in tokenizer.get_vocab() if len(t) == 1 and "\u4e00" <= t <= "\u9fff")


def long_odd_text(length: int, seed: int) -> str:
    """Random Chinese characters with the odd ones mixed in, so that each passage's text is found only once."""
    rng = random.Random(seed)
    pool = tokenizer_characters() + ["\u200b", "𠀀", "😀", "Ａ", "體", "\ufeff"]
    return "".join(rng.choice(pool) for _ in range(length))


@pytest.fixture
def odd_dataset(tmp_path: Path) -> Path:
    root = tmp_path / "odd"
    root.mkdir()
    documents = dict(ODD_DOCUMENTS, long=long_odd_text(20_000, seed=1), other="普通的文档，用来凑数")
    write_lines(root / "corpus.jsonl", [{"docid": d, "text": t} for d, t in documents.items()])
    queries = {"q_bmp": ("𠀀和𪚥", "beyond_bmp"), "q_zw": ("零\u200b宽字符", "zero_width"),
               "q_fw": ("ＡＢＣ１２３", "full_width"), "q_tw": ("繁體檔案", "traditional"),
               "q_long": (long_odd_text(LONG_QUERY_CHARACTERS, seed=2), "long")}
    rows = [{"query_id": q, "query": text, "positive_passages": [{"docid": d, "text": documents[d]}],
             "negative_passages": []} for q, (text, d) in queries.items()]
    write_lines(root / "train.jsonl", rows[:2])
    write_lines(root / "dev.jsonl", rows[2:3])
    write_lines(root / "test.jsonl", rows[3:])
    return root


def test_prepare_writes_every_query_back_character_for_character(odd_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    stats = prepare(odd_dataset, out, PrepareParams(dev_from_train=1, dev_seed=0))
    written = {}
    for path in (out / "train_queries.jsonl", out / "dev" / "queries.jsonl", out / "test" / "queries.jsonl"):
        written |= {row["query_id"]: row["query"] for row in map(json.loads, path.open(encoding="utf-8"))}
    given = {}
    for split in ("train", "dev", "test"):
        given |= {row["query_id"]: row["query"] for row in map(json.loads, (odd_dataset / f"{split}.jsonl").open())}
    assert written == given
    assert len(written["q_long"]) == LONG_QUERY_CHARACTERS
    assert stats["corpus_longest_document_characters"] == 20_000
    assert stats["corpus_documents_over_1m_characters"] == 0
    assert load_corpus(odd_dataset)["zero_width"] == ODD_DOCUMENTS["zero_width"]


def test_a_long_documents_passages_cover_every_character(odd_dataset: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(TINY_MODEL)
    text = load_corpus(odd_dataset)["long"]
    passages = split_many(tokenizer, [text], 64, 8)[0]
    assert len(passages) > 100
    covered, position = 0, 0
    for passage in passages:
        assert len(tokenizer(passage, add_special_tokens=True)["input_ids"]) <= 64
        start = text.find(passage, position)
        assert start != -1 and start <= covered, "a gap between two passages"
        covered, position = start + len(passage), start + 1
    # Before the first token and after the last, only characters the tokenizer drops may be left out.
    assert text.startswith(passages[0].lstrip("\u200b\ufeff")[:1], len(text) - len(text.lstrip("\u200b\ufeff")))
    assert text[covered:].strip("\u200b\ufeff") == ""
    kept = "".join(passages)
    for character in ("\u200b", "𠀀", "😀", "Ａ", "體", "\ufeff"):
        assert kept.count(character) >= text.count(character)


def test_a_long_query_is_truncated_at_query_max_len_tokens(odd_dataset: Path) -> None:
    embedder = load_embedder(TINY_MODEL, "mean")
    rows = [json.loads(line) for line in (odd_dataset / "test.jsonl").open(encoding="utf-8")]
    query = next(r["query"] for r in rows if r["query_id"] == "q_long")
    max_len = 64
    offsets = embedder.tokenizer(query, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    kept = query[: offsets[max_len - 3][1]]  # the max_len - 2 tokens that fit beside [CLS] and [SEP]
    one_fewer = query[: offsets[max_len - 4][1]]
    full, prefix, shorter = encode(embedder, [query, kept, one_fewer], max_len)
    np.testing.assert_allclose(full, prefix, atol=1e-6)
    assert not np.allclose(prefix, shorter, atol=1e-4), "truncated earlier than query_max_len"


def test_bm25_finds_each_odd_document_by_its_own_script(odd_dataset: Path) -> None:
    corpus = load_corpus(odd_dataset)
    # Characters outside jieba's Chinese range (U+4E00-U+9FD5) that stand side by side form one token,
    # as a run of Latin letters does: in jieba itself, and in jieba-rs, which BM25 uses.
    queries = {"bmp": "𠀀", "zw": "零\u200b宽", "fw": "ＡＢＣ１２３", "tw": "繁體檔案", "long": long_odd_text(5000, 2)}
    for tokenizer in ("jieba", "bigram"):
        run = bm25_run(corpus, queries, BM25Params(tokenizer=tokenizer, k1=1.5, b=0.75), top_k=3)
        best = {q: max(docs, key=docs.get) for q, docs in run.items()}
        assert best == {"bmp": "beyond_bmp", "zw": "zero_width", "fw": "full_width", "tw": "traditional",
                        "long": "long"}, tokenizer
