"""Multi-process training through torchrun, on the CPU: two processes with the gloo backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CORPUS, TINY_MODEL, write_lines, write_params

from zh_retrieval.core.files import check_model_dir
from zh_retrieval.retrieval.encode import encode, load_embedder


def small_params(tmp_path: Path, gradient_checkpointing: bool = False) -> Path:
    return write_params(tmp_path / "params.yaml", {
        "finetune.gradient_checkpointing": gradient_checkpointing, "finetune.nproc_per_node": 2,
        "finetune.epochs": 1, "finetune.per_device_batch_size": 2, "finetune.train_group_size": 2,
        "embedding.passage_max_len": 64, "long_documents.overlap": 8, "finetune.logging_steps": 1})


@pytest.mark.parametrize("gradient_checkpointing", [False, True], ids=["plain", "gradient-checkpointing"])
def test_two_process_training_on_cpu(tmp_path: Path, gradient_checkpointing: bool) -> None:
    """With checkpointing too: FlagEmbedding runs the encoder twice a step, which reentrant checkpointing
    under DDP rejects ("Expected to mark a variable ready only once", FlagEmbedding issue #1155)."""
    texts = list(CORPUS.values())
    train = write_lines(tmp_path / "train.jsonl", [
        {"query": text[:4], "pos": [text], "neg": [texts[(i + 1) % len(texts)]]} for i, text in enumerate(texts)
    ])
    out = tmp_path / "finetuned"
    env = dict(os.environ, HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
        [sys.executable, "-m", "zh_retrieval.stages.finetune", str(TINY_MODEL), str(train), str(out),
         "--params", str(small_params(tmp_path, gradient_checkpointing)), "--log-dir", str(tmp_path / "curves")],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--nproc_per_node=2" in result.stderr
    check_model_dir(out)
    args = json.loads((out / "training_args.json").read_text())
    assert args["negatives_cross_device"] is True, "negatives are shared across the two processes"
    assert args["gradient_checkpointing"] is gradient_checkpointing
    state = json.loads((out / "trainer_state.json").read_text())
    # 6 queries, 2 per device, 2 devices: 2 optimizer steps in the one epoch.
    assert state["global_step"] == 2
    vectors = encode(load_embedder(out, "mean"), texts[:2], 64)
    assert vectors.shape == (2, 128)
    assert not list(tmp_path.glob(".finetuned*")), "no partial directory left behind"
