"""finetune_reranker: train the cross-encoder on reranker_groups' train.jsonl with FlagEmbedding's reranker runner.

    python -m zh_retrieval.stages.finetune_reranker RERANKER_DIR TRAIN_JSONL OUT_DIR --params params.yaml

RERANKER_DIR is `reranker.base_model`, a cross-encoder (one-logit head); the hyperparameters are
params.yaml's `reranker` section and the top-level `seed`. Training runs in one process, on the
first visible GPU or the CPU: FlagEmbedding's reranker reshapes each batch by its per-device size,
which the Trainer's DataParallel over several GPUs would break. training/reranker.py says what
OUT_DIR holds.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from zh_retrieval.core.errors import run_stage
from zh_retrieval.core.files import check_cross_encoder_dir
from zh_retrieval.core.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reranker_dir", type=Path, help="a cross-encoder directory (reranker.base_model)")
    parser.add_argument("train_file", type=Path, help="reranker_groups' train.jsonl")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    params = load_params(args.params).reranker
    check_cross_encoder_dir(args.reranker_dir)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None or "," in visible:  # one GPU at most, set before torch is imported
        os.environ["CUDA_VISIBLE_DEVICES"] = (visible or "0").split(",")[0]
    from zh_retrieval.training.reranker import train_reranker

    train_reranker(args.reranker_dir, args.train_file, args.out_dir, params)


if __name__ == "__main__":
    run_stage(main)
