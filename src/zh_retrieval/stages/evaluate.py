"""evaluate: embed the evaluation queries with one model, search its corpus embeddings, score the ranking.

    python -m zh_retrieval.stages.evaluate MODEL_DIR EMBEDDINGS_DIR PREPARED_DIR OUT_DIR METRICS_JSON \
        --params params.yaml

EMBEDDINGS_DIR is the embed stage's output for the same model (the whole corpus, encoded once).

Writes OUT_DIR/run.trec (`query_id Q0 docid rank score tag`, the top max(k) documents of the
whole corpus for every query), OUT_DIR/per_query.jsonl (each query's metrics and the rank of its
first relevant document), OUT_DIR/maxp/ the same for MaxP when the embeddings have passages,
and METRICS_JSON (recall_at_k, ndcg_at_k, mrr_at_10 averaged over all evaluation queries, plus
how many queries and documents they were measured on, the query instruction used, and the precision
queries and corpus were encoded in).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zh_retrieval.core.errors import run_stage
from zh_retrieval.core.files import write_json
from zh_retrieval.core.params import load_params
from zh_retrieval.data.embeddings import corpus_precision, load_corpus_embeddings, load_passage_embeddings
from zh_retrieval.data.prepared import QRELS, check_qrels_docids, load_eval_queries, load_evidence_groups
from zh_retrieval.retrieval.evaluation import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("embeddings_dir", type=Path, help="the embed stage's output for this model")
    parser.add_argument("prepared_dir", type=Path, help="prepare's output: queries.jsonl and qrels.tsv")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--tag", help="run tag in run.trec (default: the output directory's name)")
    args = parser.parse_args()

    params = load_params(args.params)
    queries, qrels = load_eval_queries(args.prepared_dir)
    docids, corpus_vectors = load_corpus_embeddings(args.embeddings_dir)
    check_qrels_docids(qrels, set(docids), args.prepared_dir / QRELS, args.embeddings_dir)
    passages = load_passage_embeddings(args.embeddings_dir)
    metrics = evaluate(args.model_dir, docids, corpus_vectors, passages, corpus_precision(args.embeddings_dir),
                       queries, qrels, args.out_dir, params.embedding, params.encode, params.evaluate,
                       args.tag or args.out_dir.name, load_evidence_groups(args.prepared_dir))
    write_json(args.metrics, metrics)


if __name__ == "__main__":
    run_stage(main)
