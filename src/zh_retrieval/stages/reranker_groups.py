"""reranker_groups: the groups the reranker trains on (`reranker.negatives`).

    python -m zh_retrieval.stages.reranker_groups BASE_MODEL_DIR EMBEDDINGS_DIR DATASET_DIR TRAIN_QUERIES \
        TRAIN_JSONL OUT_DIR --params params.yaml [--passages PASSAGES_DIR]

With `reranker.negatives: mined`, OUT_DIR/train.jsonl is mine's TRAIN_JSONL byte for byte and nothing
else is read. With `bm25`, each of its rows keeps its query and positive and gets negatives drawn from
BM25's top `rerank.depth` (training/reranker_groups.py says how); BASE_MODEL_DIR and EMBEDDINGS_DIR are
mine's (the base model's tokenizer cut the passages, embed@base's rows order them), TRAIN_QUERIES is
prepare's train_queries.jsonl (the positives left out), PASSAGES_DIR the cut stage's output.
OUT_DIR/groups.json says what was drawn.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

from zh_retrieval.core.errors import InputError, run_stage
from zh_retrieval.core.files import atomic_dir, check_model_dir, write_json
from zh_retrieval.core.params import load_params
from zh_retrieval.data.embeddings import load_corpus_embeddings
from zh_retrieval.data.mldr import load_corpus
from zh_retrieval.data.prepared import read_train_queries
from zh_retrieval.training.reranker_groups import bm25_groups, read_rows

logger = logging.getLogger(__name__)

TRAIN_FILE = "train.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path, help="the base model (its tokenizer cut the passages)")
    parser.add_argument("embeddings_dir", type=Path, help="the embed stage's output for the base model")
    parser.add_argument("dataset_dir", type=Path)
    parser.add_argument("train_queries", type=Path, help="prepare's train_queries.jsonl")
    parser.add_argument("train_file", type=Path, help="mine's train.jsonl")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--passages", type=Path, help="the cut stage's output, for the passages' texts")
    args = parser.parse_args()
    params = load_params(args.params)
    if not args.train_file.is_file():
        raise InputError(args.train_file, "training file not found", fix="run the mine stage first")
    if params.reranker.negatives == "mined":
        with atomic_dir(args.out_dir) as tmp:
            shutil.copyfile(args.train_file, tmp / TRAIN_FILE)
        logger.info("reranker.negatives is mined: %s is mine's rows unchanged", args.out_dir / TRAIN_FILE)
        return
    check_model_dir(args.model_dir)
    positives = {q.query_id: q.positive_ids for q in read_train_queries(args.train_queries)}
    rows = read_rows(args.train_file, positives, args.train_queries)
    docids, _ = load_corpus_embeddings(args.embeddings_dir)
    corpus = load_corpus(args.dataset_dir)
    if set(docids) != set(corpus):
        raise InputError(args.embeddings_dir, "the embeddings are of another corpus than the dataset's",
                         fix="re-run the embed stage")
    row_of = {docid: row for row, docid in enumerate(docids)}
    passages = None
    if params.long_documents.maxp:
        from zh_retrieval.mining.corpus import load_passages

        passages = load_passages(args.model_dir, args.embeddings_dir, [corpus[d] for d in docids], params.embedding,
                                 params.long_documents, args.passages)
    grouped, stats = bm25_groups(rows, positives, corpus, row_of, passages, params, args.train_file)
    with atomic_dir(args.out_dir) as tmp:
        with (tmp / TRAIN_FILE).open("w", encoding="utf-8") as f:
            for row in grouped:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        write_json(tmp / "groups.json", stats)
    logger.info("reranker groups: %d rows, %.1f BM25 negatives each from its top %d (median rank %s)",
                stats["rows"], stats["negatives_per_row"], stats["depth"], stats["median_bm25_rank"])


if __name__ == "__main__":
    run_stage(main)
