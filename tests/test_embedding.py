"""Embedding a corpus in chunks and in several processes gives what one pass in one process gives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CORPUS, TINY_MODEL, write_params

from zh_retrieval.core.params import EmbeddingParams, EncodeParams, LongDocumentParams
from zh_retrieval.data.embeddings import load_corpus_embeddings, load_passage_embeddings
from zh_retrieval.retrieval.embedding import embed_corpus


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


def test_embed_stage_writes_the_same_bytes_on_a_second_run(tmp_path: Path, dataset_dir: Path) -> None:
    """The embed stage, run twice under different hash seeds: every file it writes is byte-identical."""
    params = write_params(tmp_path / "params.yaml", {"embedding.passage_max_len": 8, "long_documents.overlap": 2})
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"embeddings-{seed}"
        subprocess.run([sys.executable, "-m", "zh_retrieval.stages.embed", str(TINY_MODEL), str(dataset_dir),
                        str(out), "--params", str(params)], check=True, capture_output=True, timeout=300,
                       env=dict(os.environ, PYTHONHASHSEED=seed, HF_HUB_OFFLINE="1"))
        outputs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert "passages.npy" in outputs[0] and outputs[0] == outputs[1]


def test_two_torchrun_processes_write_the_bytes_one_process_writes(tmp_path: Path, dataset_dir: Path) -> None:
    """embed under torchrun with two gloo processes on the CPU (one per GPU on a GPU machine): each encodes
    every other batch, rank 0 gathers and writes, and every file is the one process's, byte for byte."""
    params = write_params(tmp_path / "params.yaml", {"embedding.passage_max_len": 8, "long_documents.overlap": 2,
                                                     "encode.batch_size": 3})
    # One thread a process in both runs (torchrun's default): here 2 threads gave the same bytes too, but a
    # CPU's BLAS may split a product by its thread count, and that is not what this test is about.
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    stage = ["-m", "zh_retrieval.stages.embed", str(TINY_MODEL), str(dataset_dir)]
    subprocess.run([sys.executable, *stage, str(tmp_path / "one"), "--params", str(params)], check=True,
                   capture_output=True, timeout=300, env=env)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *stage,
                          str(tmp_path / "two"), "--params", str(params)], capture_output=True, text=True,
                         timeout=300, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "[rank 1]" in two.stderr  # the second process encoded its share
    one_files = {p.name: p.read_bytes() for p in sorted((tmp_path / "one").iterdir())}
    assert "passages.npy" in one_files
    assert {p.name: p.read_bytes() for p in sorted((tmp_path / "two").iterdir())} == one_files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "one", "params.yaml", "two"]  # no temporaries
