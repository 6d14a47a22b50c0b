"""Killing finetune part-way: resume from the last checkpoint when enabled, restart clean otherwise."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from conftest import CORPUS, TINY_MODEL, write_lines, write_params
from safetensors.torch import load_file

from zh_retrieval.core.files import check_model_dir


def params_file(tmp_path: Path, checkpoint_every: float | None, processes: int = 1) -> Path:
    return write_params(tmp_path / f"params-{checkpoint_every}-{processes}.yaml", {
        "finetune.epochs": 2, "finetune.batch_size": 2, "finetune.train_group_size": 2,
        "embedding.passage_max_len": 32, "long_documents.overlap": 8, "finetune.nproc_per_node": processes,
        "finetune.checkpoint_every": checkpoint_every})  # 0.25: every 8 of the epoch's 30 steps


def train_file(tmp_path: Path) -> Path:
    texts = list(CORPUS.values())
    rows = [{"query": f"{t[:3]}{i}", "pos": [t], "neg": [texts[(i + 1) % len(texts)]]}
            for i, t in enumerate(texts * 10)]  # 60 queries: 60 steps at batch 2 over 2 epochs
    return write_lines(tmp_path / "train.jsonl", rows)


def start(tmp_path: Path, params: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "zh_retrieval.stages.finetune", str(TINY_MODEL), str(tmp_path / "train.jsonl"), str(out),
         "--params", str(params)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES=""))


def kill_after_first_checkpoint(process: subprocess.Popen, partial: Path, signal_number: int = signal.SIGKILL,
                                timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not list(partial.glob("checkpoint-*/trainer_state.json")):
        assert process.poll() is None, f"training ended before its first checkpoint:\n{process.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    process.send_signal(signal_number)
    process.wait()


def test_terminated_run_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    train_file(tmp_path)
    params, out = params_file(tmp_path, 0.25), tmp_path / "finetuned"
    first = start(tmp_path, params, out)
    kill_after_first_checkpoint(first, tmp_path / ".finetuned.partial", signal.SIGTERM)
    assert not out.exists(), "a killed run publishes nothing"

    second = start(tmp_path, params, out)
    _, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr[-3000:]
    assert "resuming from" in stderr and "checkpoint-" in stderr
    check_model_dir(out)
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 60
    assert not list(out.glob("checkpoint-*")), "checkpoints are not part of the model"
    assert not (tmp_path / ".finetuned.partial").exists() and not (tmp_path / ".finetuned.partial.json").exists()

    # The resumed run ends where an uninterrupted one does: weights, not just the step count.
    uninterrupted = tmp_path / "uninterrupted"
    third = start(tmp_path, params, uninterrupted)
    _, stderr = third.communicate(timeout=600)
    assert third.returncode == 0, stderr[-3000:]
    resumed, reference = load_file(out / "model.safetensors"), load_file(uninterrupted / "model.safetensors")
    assert resumed.keys() == reference.keys()
    for name, tensor in reference.items():
        torch.testing.assert_close(resumed[name], tensor, atol=1e-5, rtol=1e-4, msg=name)


def test_killed_run_restarts_clean_without_checkpoints(tmp_path: Path) -> None:
    train_file(tmp_path)
    resumable, plain, out = params_file(tmp_path, 0.25), params_file(tmp_path, None), tmp_path / "finetuned"
    first = start(tmp_path, resumable, out)
    kill_after_first_checkpoint(first, tmp_path / ".finetuned.partial", signal.SIGKILL)

    # Resuming is off in this run: the leftovers are removed and training starts from step 0.
    second = start(tmp_path, plain, out)
    _, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr[-3000:]
    assert "resuming from" not in stderr and "left by an interrupted run, as resuming is off" in stderr
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 60


def test_checkpoints_of_one_process_are_not_resumed_by_two(tmp_path: Path) -> None:
    """The Trainer would restore the checkpoint's per-device batch and re-count finished epochs with the new
    world size: the run restarts instead, saying why, and still trains every step of the recipe."""
    train_file(tmp_path)
    out = tmp_path / "finetuned"
    first = start(tmp_path, params_file(tmp_path, 0.25, processes=1), out)
    kill_after_first_checkpoint(first, tmp_path / ".finetuned.partial", signal.SIGKILL)

    second = start(tmp_path, params_file(tmp_path, 0.25, processes=2), out)
    _, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr[-3000:]
    assert "resuming from" not in stderr
    assert "written by 1 training process and this run has 2" in stderr
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 60, "the global batch of 2 takes 30 steps an epoch on 2 processes too"
    assert json.loads((out / "training_args.json").read_text())["per_device_train_batch_size"] == 1
