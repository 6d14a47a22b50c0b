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


def small_params(tmp_path: Path, gradient_checkpointing: bool = False, processes: int = 2, batch_size: int = 4
                 ) -> Path:
    return write_params(tmp_path / f"params-{processes}.yaml", {
        "finetune.gradient_checkpointing": gradient_checkpointing, "finetune.nproc_per_node": processes,
        "finetune.epochs": 1, "finetune.batch_size": batch_size, "finetune.train_group_size": 2,
        "embedding.passage_max_len": 64, "long_documents.overlap": 8, "finetune.logging_steps": 1})


def train_rows(tmp_path: Path, copies: int = 1) -> Path:
    texts = list(CORPUS.values())
    return write_lines(tmp_path / "train.jsonl", [
        {"query": f"{text[:4]}{i}", "pos": [text], "neg": [texts[(i + 1) % len(texts)]]}
        for i, text in enumerate(texts * copies)
    ])


def finetune(tmp_path: Path, train: Path, out: Path, params: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    return subprocess.run(
        [sys.executable, "-m", "zh_retrieval.stages.finetune", str(TINY_MODEL), str(train), str(out),
         "--params", str(params), "--log-dir", str(tmp_path / f"curves-{out.name}")],
        capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.parametrize("gradient_checkpointing", [False, True], ids=["plain", "gradient-checkpointing"])
def test_two_process_training_on_cpu(tmp_path: Path, gradient_checkpointing: bool) -> None:
    """With checkpointing too: FlagEmbedding runs the encoder twice a step, which reentrant checkpointing
    under DDP rejects ("Expected to mark a variable ready only once", FlagEmbedding issue #1155)."""
    texts = list(CORPUS.values())
    out = tmp_path / "finetuned"
    result = finetune(tmp_path, train_rows(tmp_path), out, small_params(tmp_path, gradient_checkpointing))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--nproc_per_node=2" in result.stderr
    check_model_dir(out)
    args = json.loads((out / "training_args.json").read_text())
    assert args["negatives_cross_device"] is True, "negatives are shared across the two processes"
    assert args["gradient_checkpointing"] is gradient_checkpointing
    state = json.loads((out / "trainer_state.json").read_text())
    # 6 queries, a global batch of 4 (2 per process): 2 optimizer steps in the one epoch.
    assert state["global_step"] == 2
    assert args["per_device_train_batch_size"] == 2
    vectors = encode(load_embedder(out, "mean"), texts[:2], 64)
    assert vectors.shape == (2, 128)
    assert not list(tmp_path.glob(".finetuned*")), "no partial directory left behind"


def test_one_and_two_processes_train_the_same_schedule(tmp_path: Path) -> None:
    """finetune.batch_size is the global batch: the step count, warmup and learning rate of every step
    are those of one process, whatever the world size."""
    train = train_rows(tmp_path, copies=5)  # 30 queries at a global batch of 4: 8 steps
    states, per_device = {}, {}
    for processes in (1, 2):
        out = tmp_path / f"finetuned-{processes}"
        result = finetune(tmp_path, train, out, small_params(tmp_path, processes=processes))
        assert result.returncode == 0, result.stderr[-3000:]
        states[processes] = json.loads((out / "trainer_state.json").read_text())
        per_device[processes] = json.loads((out / "training_args.json").read_text())["per_device_train_batch_size"]
    assert per_device == {1: 4, 2: 2}
    assert states[1]["global_step"] == states[2]["global_step"] == 8
    schedules = {n: [(e["step"], e["learning_rate"]) for e in state["log_history"] if "learning_rate" in e]
                 for n, state in states.items()}
    assert len(schedules[1]) == 8 and schedules[1] == schedules[2]


def test_a_batch_that_does_not_divide_among_the_processes_fails_before_launch(tmp_path: Path) -> None:
    out = tmp_path / "finetuned"
    result = finetune(tmp_path, train_rows(tmp_path), out, small_params(tmp_path, processes=2, batch_size=5))
    assert result.returncode == 2
    assert "`finetune.batch_size` 5 does not divide among 2 training processes" in result.stderr
    assert "--nproc_per_node" not in result.stderr and not out.exists()
