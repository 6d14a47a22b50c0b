"""merge: the fine-tuned model averaged with its base model (LM-Cocktail, training/merge.py).

    python -m zh_retrieval.stages.merge BASE_MODEL_DIR FINETUNED_DIR OUT_DIR --params params.yaml

merged = w x fine-tuned + (1 - w) x base, with w = `merge.finetuned_weight`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zh_retrieval.core.errors import run_stage
from zh_retrieval.core.params import load_params
from zh_retrieval.training.merge import merge_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base_model", type=Path)
    parser.add_argument("finetuned_model", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    params = load_params(args.params).merge
    merge_models(args.base_model, args.finetuned_model, args.out_dir, params.finetuned_weight, params.seed)


if __name__ == "__main__":
    run_stage(main)
