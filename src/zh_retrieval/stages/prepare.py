"""prepare: an MLDR-layout dataset -> the training queries and the evaluation files, all validated.

    python -m zh_retrieval.stages.prepare DATASET_DIR OUT_DIR --params params.yaml --tokenizer MODEL_DIR \
        --stats metrics/prepare.json
    python -m zh_retrieval.stages.prepare --check DATASET_DIR   # validate a dataset, print its counts, write nothing

OUT_DIR gets train_queries.jsonl and, for each of dev and test, SPLIT/queries.jsonl (each query
with where its evidence lies when the dataset records it) and SPLIT/qrels.tsv; data/prepared.py has
their format. A dataset without dev.jsonl gets `prepare.dev_from_train` training queries as dev.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zh_retrieval.core.errors import run_stage
from zh_retrieval.core.files import write_json
from zh_retrieval.core.params import load_params
from zh_retrieval.data.preparation import check_dataset, prepare


def print_check(dataset_dir: Path) -> None:
    counts = check_dataset(dataset_dir)
    print(f"{dataset_dir}: a valid MLDR-layout dataset")
    for name, value in counts.items():
        print(f"  {name:<28} {value:>12,}")
    if "dev_queries" not in counts:
        print("  (no dev.jsonl: prepare holds out prepare.dev_from_train training queries as dev)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset_dir", type=Path, help="a directory in MLDR's layout")
    parser.add_argument("out_dir", type=Path, nargs="?", help="where to write the prepared files (not with --check)")
    parser.add_argument("--check", action="store_true",
                        help="only validate DATASET_DIR and print its counts; exit 2 naming the first problem")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--stats", type=Path, help="where to write the counts as JSON (a DVC metrics file)")
    parser.add_argument("--tokenizer", type=Path,
                        help="the model whose tokenizer places evidence offsets in passages (the base model)")
    args = parser.parse_args()
    if args.check:
        print_check(args.dataset_dir)
        return
    if args.out_dir is None:
        parser.error("OUT_DIR is required unless --check is given")
    params = load_params(args.params)
    stats = prepare(args.dataset_dir, args.out_dir, params.prepare, args.tokenizer, params.embedding.passage_max_len)
    if args.stats:
        write_json(args.stats, stats)


if __name__ == "__main__":
    run_stage(main)
