"""Mining end to end on the tiny model: train.jsonl names each text, and is the same bytes every run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import CORPUS, TINY_MODEL
from mining_cases import PARAMS, project_params
from transformers import AutoTokenizer

from zh_retrieval.core.errors import InputError
from zh_retrieval.core.params import EmbeddingParams, EncodeParams, LongDocumentParams
from zh_retrieval.data.passages import split_into_passages
from zh_retrieval.data.prepared import TrainQuery
from zh_retrieval.mining.miner import run_mining
from zh_retrieval.retrieval.embedding import embed_corpus
from zh_retrieval.retrieval.encode import encode, load_embedder


def test_mining_file_is_byte_identical_across_runs(tmp_path: Path) -> None:
    embedding = EmbeddingParams(pooling="mean", query_instruction="", query_max_len=32, passage_max_len=64)
    encoding = EncodeParams(batch_size=4, precision="fp32")
    embed_corpus(TINY_MODEL, CORPUS.items(), tmp_path / "emb", embedding, encoding)
    queries = [TrainQuery("q1", "列出目录", ("d1",), ()), TrainQuery("q2", "删除文件", ("d3",), ())]
    params = replace(PARAMS, negatives_per_query=3, hard_ratio=0.7, hard_rank_max=4, false_negative_margin=0.05)
    outputs = []
    for name in ("a", "b"):
        stats = run_mining(TINY_MODEL, tmp_path / "emb", CORPUS, queries, tmp_path / name,
                           project_params(embedding=embedding, encode=encoding, mine=params))
        outputs.append((tmp_path / name / "train.jsonl").read_bytes())
        assert stats["queries"] == 2 and stats["negatives_per_query"] == 3
    assert outputs[0] == outputs[1]


def test_best_passage_training_file_names_each_text_and_checks_the_passages(tmp_path: Path) -> None:
    # 8-token passages with 2 of overlap cut CORPUS's longer documents in two or more.
    embedding = EmbeddingParams(pooling="mean", query_instruction="", query_max_len=32, passage_max_len=8)
    encoding = EncodeParams(batch_size=4, precision="fp32")
    long_documents = LongDocumentParams(maxp=True, overlap=2)
    embed_corpus(TINY_MODEL, CORPUS.items(), tmp_path / "emb", embedding, encoding, long_documents)
    queries = [TrainQuery("q1", "目录内容的命令", ("d1",), ("d2", "d4")), TrainQuery("q2", "删除文件", ("d3",), ())]
    params = replace(PARAMS, negatives_per_query=3, hard_ratio=0.7, hard_rank_max=4, false_negative_margin=0.05,
                     positive="best_passage", guard="best_passage", negative_text="best_passage",
                     dataset_negative_share=0.34)
    outputs = []
    for name in ("a", "b"):
        stats = run_mining(TINY_MODEL, tmp_path / "emb", CORPUS, queries, tmp_path / name,
                           project_params(embedding=embedding, encode=encoding, mine=params,
                                          long_documents=long_documents))
        outputs.append((tmp_path / name / "train.jsonl").read_bytes())
    assert outputs[0] == outputs[1]
    assert stats["queries"] == 2 and stats["dataset_negatives"] + stats["skipped_dataset_negatives"] >= 1

    tokenizer = AutoTokenizer.from_pretrained(TINY_MODEL)
    rows = [json.loads(line) for line in outputs[0].decode("utf-8").splitlines()]
    for row in rows:
        named = [*zip(row["pos"], row["pos_passages"]), *zip(row["neg"], row["neg_passages"])]
        assert len(named) == 4
        for text, where in named:
            pieces = split_into_passages(tokenizer, CORPUS[where["docid"]], 8, 2)
            assert text == (CORPUS[where["docid"]] if where["passage"] == 0 else pieces[where["passage"]])
    # The best passage is the one the base model scores highest for the query.
    embedder = load_embedder(TINY_MODEL, "mean", "fp32")
    query = encode(embedder, ["目录内容的命令"], 32, 4)[0]
    pieces = split_into_passages(tokenizer, CORPUS["d1"], 8, 2)
    assert len(pieces) >= 2
    best = int(np.argmax(encode(embedder, pieces, 8, 4) @ query))
    assert rows[0]["pos_passages"] == [{"docid": "d1", "passage": best}]

    # Passages cut otherwise than embed cut them are an error, naming the embeddings; nothing is written.
    with pytest.raises(InputError, match="passage embeddings but splits into"):
        run_mining(TINY_MODEL, tmp_path / "emb", CORPUS, queries, tmp_path / "c",
                   project_params(embedding=embedding, encode=encoding, mine=params,
                                  long_documents=LongDocumentParams(maxp=True, overlap=4)))
    assert not (tmp_path / "c").exists()
    embed_corpus(TINY_MODEL, CORPUS.items(), tmp_path / "no-maxp", embedding, encoding)
    with pytest.raises(InputError, match="no passage embeddings"):
        run_mining(TINY_MODEL, tmp_path / "no-maxp", CORPUS, queries, tmp_path / "d",
                   project_params(embedding=embedding, encode=encoding, mine=params, long_documents=long_documents))
