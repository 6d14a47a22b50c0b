"""package: a model directory with its model card, for the `zh-embedder` artifacts.

    python -m zh_retrieval.stages.package MODEL_DIR OUT_DIR --name finetuned --params params.yaml --metrics metrics

OUT_DIR is a copy of MODEL_DIR (output/finetuned or output/merged) with a README.md in the
Hugging Face hub's model-card layout (reporting/card.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zh_retrieval.core.errors import run_stage
from zh_retrieval.core.params import load_params
from zh_retrieval.reporting.card import package


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--name", required=True, help="finetuned or merged: which metrics/<name>.json describe it")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics"))
    args = parser.parse_args()
    package(args.model_dir, args.out_dir, args.name, load_params(args.params).raw, args.metrics)


if __name__ == "__main__":
    run_stage(main)
