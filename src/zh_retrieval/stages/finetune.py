"""finetune: train the base model on mine's train.jsonl with FlagEmbedding's encoder-only runner.

    python -m zh_retrieval.stages.finetune BASE_MODEL_DIR TRAIN_JSONL OUT_DIR --params params.yaml \
        --log-dir metrics/training

Hyperparameters come from params.yaml (top-level `lr` and `seed`, `embedding.*`, `finetune.*`).
On a machine with several GPUs the command re-launches itself under torchrun (PyTorch's own
launcher), one process per visible GPU (`finetune.nproc_per_node` overrides, NNODES/NODE_RANK/
MASTER_ADDR/MASTER_PORT in the environment span machines), with negatives shared across
devices; on one GPU or a CPU it trains in this process. training/finetune.py says what OUT_DIR
holds and how a killed run resumes.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

from zh_retrieval.core.errors import InputError, run_stage
from zh_retrieval.core.files import check_free_space, check_model_dir
from zh_retrieval.core.params import load_params
from zh_retrieval.retrieval.distributed import torchrun_arguments
from zh_retrieval.retrieval.encode import visible_devices
from zh_retrieval.training.finetune import (
    VERBOSE_VARIABLE,
    check_train_file,
    partial_dir,
    per_device_batch_size,
    prepare_partial_dir,
    space_needed,
    train,
    training_fingerprint,
)

logger = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base_model", type=Path, help="a model directory saved with save_pretrained")
    parser.add_argument("train_file", type=Path, help="mine's train.jsonl")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--log-dir", type=Path, help="DVCLive directory for the training curves")
    parser.add_argument("--verbose", action="store_true",
                        help=f"FlagEmbedding's full argument dump and logs (or set {VERBOSE_VARIABLE}=1)")
    args = parser.parse_args()
    verbose = args.verbose or os.environ.get(VERBOSE_VARIABLE, "") not in ("", "0")

    all_params = load_params(args.params)
    embedding, params = all_params.embedding, all_params.finetune
    check_model_dir(args.base_model)
    gpus = [device for device in visible_devices() if device != "cpu"]
    if params.precision == "fp16" and not gpus:
        raise InputError(args.params, "finetune.precision is fp16 but no GPU is visible",
                         fix="use fp32 or bf16 on a CPU")
    launched_by_torchrun = "LOCAL_RANK" in os.environ
    processes = params.nproc_per_node or max(len(gpus), 1)
    world_size = (int(os.environ["WORLD_SIZE"]) if launched_by_torchrun
                  else processes * int(os.environ.get("NNODES", "1")))
    per_device_batch_size(params.batch_size, world_size, args.params)  # an indivisible batch fails before launch
    if not launched_by_torchrun:
        check_train_file(args.train_file, params.train_group_size, params.distill)
        fingerprint = training_fingerprint(args.base_model, args.train_file, embedding, params, world_size)
        prepare_partial_dir(args.out_dir, fingerprint, resume=params.checkpoint_every is not None)
        check_free_space(partial_dir(args.out_dir),
                         space_needed(args.base_model, params, partial=partial_dir(args.out_dir)))
    if world_size > 1 and not launched_by_torchrun:  # several processes here, or one on each of several nodes
        command = [sys.executable, "-m", "torch.distributed.run", *torchrun_arguments(processes),
                   "-m", "zh_retrieval.stages.finetune", *sys.argv[1:]]
        logger.info("launching %s", " ".join(command))
        sys.exit(subprocess.run(command, check=False).returncode)
    train(args.base_model, args.train_file, args.out_dir, embedding, params, args.log_dir, verbose)


if __name__ == "__main__":
    run_stage(main)
