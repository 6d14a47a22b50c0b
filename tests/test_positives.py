"""The positive's text: truncated, the base model's best passage, or BM25's."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from conftest import CORPUS, TINY_MODEL
from mining_cases import PARAMS, PASSAGE_GUARD, project_params, run_passages
from transformers import AutoTokenizer

from zh_retrieval.core.params import EmbeddingParams, EncodeParams, LongDocumentParams
from zh_retrieval.data.passages import split_into_passages
from zh_retrieval.data.prepared import TrainQuery
from zh_retrieval.mining.miner import run_mining
from zh_retrieval.mining.positives import PassageRef
from zh_retrieval.retrieval.embedding import embed_corpus


def test_positive_is_the_best_scoring_passage_of_its_document() -> None:
    # d6's third passage points at the query; its first (what truncation keeps) ranks 7th.
    best = run_passages("d6", PASSAGE_GUARD, {6: [1.0, 0.0, 2.0]})
    assert best.positives == [PassageRef("d6", 2)]
    first = run_passages("d6", replace(PASSAGE_GUARD, positive="truncated"), {6: [1.0, 0.0, 2.0]})
    assert first.positives == [PassageRef("d6", 0)]


def test_bm25_passage_positive_is_the_passage_sharing_the_querys_words(tmp_path: Path) -> None:
    embedding = EmbeddingParams(pooling="mean", query_instruction="", query_max_len=32, passage_max_len=8)
    encoding = EncodeParams(batch_size=4, precision="fp32")
    long_documents = LongDocumentParams(maxp=True, overlap=2)
    embed_corpus(TINY_MODEL, CORPUS.items(), tmp_path / "emb", embedding, encoding, long_documents)
    tokenizer = AutoTokenizer.from_pretrained(TINY_MODEL)
    pieces = split_into_passages(tokenizer, CORPUS["d1"], 8, 2)
    assert len(pieces) == 2 and "命令" in pieces[1] and "命令" not in pieces[0]
    queries = [TrainQuery("q1", "命令", ("d1",), ()), TrainQuery("q2", "列出", ("d1",), ())]
    params = replace(PARAMS, negatives_per_query=2, positive="bm25_passage", guard="best_passage",
                     false_negative_margin=None)
    run_mining(TINY_MODEL, tmp_path / "emb", CORPUS, queries, tmp_path / "mined",
               project_params(embedding=embedding, encode=encoding, mine=params, long_documents=long_documents))
    rows = [json.loads(line) for line in (tmp_path / "mined" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [row["pos_passages"] for row in rows] == [[{"docid": "d1", "passage": 1}], [{"docid": "d1", "passage": 0}]]
    assert rows[0]["pos"] == [pieces[1]] and rows[1]["pos"] == [CORPUS["d1"]]
