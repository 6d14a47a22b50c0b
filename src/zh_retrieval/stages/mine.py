"""mine: give every training query a positive passage and negatives mined with the base model, mixed with random ones.

    python -m zh_retrieval.stages.mine BASE_MODEL_DIR EMBEDDINGS_DIR DATASET_DIR TRAIN_QUERIES OUT_DIR \
        --params params.yaml --stats metrics/mine.json [--passages PASSAGES_DIR]

The positive's text is `mine.positive` (mining/positives.py); the negatives are the dataset's own,
hard and random ones (mining/negatives.py) behind the false-negative guard `mine.guard`
(mining/guard.py). Writes OUT_DIR/train.jsonl (mining/miner.py has its fields) and the counts to
the stats file (mining/stats.py); the stage stops when more than `mine.max_share_without_hard`
of the queries got no hard negative.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zh_retrieval.core.errors import run_stage
from zh_retrieval.core.files import write_json
from zh_retrieval.core.params import load_params
from zh_retrieval.data.mldr import load_corpus
from zh_retrieval.data.prepared import read_train_queries
from zh_retrieval.mining.miner import run_mining
from zh_retrieval.mining.stats import check_corpus_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path, help="the base model (queries are encoded with it)")
    parser.add_argument("embeddings_dir", type=Path, help="the embed stage's output for the base model")
    parser.add_argument("dataset_dir", type=Path)
    parser.add_argument("train_queries", type=Path, help="prepare's train_queries.jsonl")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--stats", type=Path)
    parser.add_argument("--passages", type=Path, help="the cut stage's output: passage texts from its spans "
                        "(without it, the documents are cut again)")
    args = parser.parse_args()
    params = load_params(args.params)
    queries = read_train_queries(args.train_queries)
    corpus = load_corpus(args.dataset_dir)
    check_corpus_size(corpus, queries, params.mine, args.params)
    stats = run_mining(args.model_dir, args.embeddings_dir, corpus, queries, args.out_dir, params, args.passages)
    if args.stats:
        write_json(args.stats, stats)


if __name__ == "__main__":
    run_stage(main)
