"""evaluate: embed the evaluation queries with one model, search its corpus embeddings, score the ranking.

    python -m zh_retrieval.stages.evaluate MODEL_DIR EMBEDDINGS_DIR PREPARED_DIR OUT_DIR METRICS_DIR \
        --params params.yaml [--name NAME]

EMBEDDINGS_DIR is the embed stage's output for the same model (the whole corpus, encoded once).
Each evaluation split (dev, where choices are read, and test, read by none) is scored alike.

Writes, per SPLIT, OUT_DIR/SPLIT/run.trec (`query_id Q0 docid rank score tag`, the top max(k)
documents of the whole corpus for every query), OUT_DIR/SPLIT/per_query.jsonl (each query's
metrics and the rank of its first relevant document), OUT_DIR/SPLIT/maxp/ the same for MaxP when
the embeddings have passages, with matched.tsv (the passage each query matched in its top 10
documents, which the report's page shows), and METRICS_DIR/SPLIT/NAME.json (recall_at_k, ndcg_at_k, mrr_at_10
averaged over the split's queries, plus how many queries and documents they were measured on, the
query instruction used, and the precision queries and corpus were encoded in). NAME defaults to
OUT_DIR's name.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zh_retrieval.core.errors import run_stage
from zh_retrieval.core.files import atomic_dir, write_json
from zh_retrieval.core.params import EVAL_SPLITS, load_params
from zh_retrieval.data.embeddings import corpus_precision, load_corpus_embeddings, load_passage_embeddings
from zh_retrieval.data.prepared import QRELS, check_qrels_docids, load_eval_queries, load_evidence_groups
from zh_retrieval.retrieval.encode import load_embedder
from zh_retrieval.retrieval.evaluation import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("embeddings_dir", type=Path, help="the embed stage's output for this model")
    parser.add_argument("prepared_dir", type=Path, help="prepare's output: SPLIT/queries.jsonl and SPLIT/qrels.tsv")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("metrics_dir", type=Path, help="gets SPLIT/NAME.json for every split")
    parser.add_argument("--name", help="the metrics files' name (default: the output directory's name)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--tag", help="run tag in run.trec (default: the output directory's name)")
    args = parser.parse_args()

    params = load_params(args.params)
    docids, corpus_vectors = load_corpus_embeddings(args.embeddings_dir)
    passages = load_passage_embeddings(args.embeddings_dir)
    embedder = load_embedder(args.model_dir, params.embedding.pooling, params.encode.precision)
    evaluated = {}
    with atomic_dir(args.out_dir) as tmp:  # a failed split leaves no run of the others either
        for split in EVAL_SPLITS:
            split_dir = args.prepared_dir / split
            queries, qrels = load_eval_queries(split_dir)
            check_qrels_docids(qrels, set(docids), split_dir / QRELS, args.embeddings_dir)
            evaluated[split] = evaluate(embedder, docids, corpus_vectors, passages,
                                        corpus_precision(args.embeddings_dir), queries, qrels, tmp / split,
                                        params.embedding, params.encode, params.evaluate,
                                        args.tag or args.out_dir.name, load_evidence_groups(split_dir))
    for split, metrics in evaluated.items():
        write_json(args.metrics_dir / split / f"{args.name or args.out_dir.name}.json", metrics)


if __name__ == "__main__":
    run_stage(main)
