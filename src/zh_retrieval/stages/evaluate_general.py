"""evaluate_general: score one model on the general-domain set, to see what fine-tuning cost elsewhere.

    python -m zh_retrieval.stages.evaluate_general MODEL_DIR GENERAL_DATASET_DIR OUT_DIR METRICS_JSON \
        --params params.yaml

GENERAL_DATASET_DIR is a directory in MLDR's layout with corpus.jsonl and test.jsonl (the
bundled data/general, or a fetched C-MTEB set: `python -m zh_retrieval.fetch t2retrieval ...`).
Its corpus is encoded with the model (truncated at embedding.passage_max_len, as the domain
evaluation's main figure is), its test queries searched, and the same metrics written as
evaluate writes for the domain: base, fine-tuned and merged each get a metrics/general_<model>.json,
so `dvc metrics diff` shows a general regression next to the domain gain.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from zh_retrieval.core.errors import run_stage
from zh_retrieval.core.files import check_model_dir, write_json
from zh_retrieval.core.params import EmbeddingParams, EncodeParams, EvaluateParams, load_params
from zh_retrieval.data.embeddings import corpus_precision
from zh_retrieval.data.mldr import load_corpus, load_queries
from zh_retrieval.retrieval.embedding import embed_corpus
from zh_retrieval.retrieval.evaluation import evaluate


def evaluate_general(model_dir: Path, dataset_dir: Path, out_dir: Path, embedding: EmbeddingParams,
                     encoding: EncodeParams, params: EvaluateParams) -> dict:
    check_model_dir(model_dir)
    corpus = load_corpus(dataset_dir)
    queries = load_queries(dataset_dir, "test", corpus)
    texts = {q.query_id: q.text for q in queries}
    qrels = {q.query_id: {d: 1 for d in q.positive_ids} for q in queries}
    with tempfile.TemporaryDirectory(prefix="general-embeddings-") as tmp:
        vectors = embed_corpus(model_dir, corpus.items(), Path(tmp) / "embeddings", embedding, encoding)
        precision = corpus_precision(Path(tmp) / "embeddings")
    metrics = evaluate(model_dir, list(corpus), vectors, None, precision, texts, qrels, out_dir, embedding, encoding,
                       params, out_dir.name)
    metrics["dataset"] = str(dataset_dir)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("dataset_dir", type=Path, help="the general-domain set, MLDR layout (corpus + test)")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    params = load_params(args.params)
    metrics = evaluate_general(args.model_dir, args.dataset_dir, args.out_dir, params.embedding, params.encode,
                               params.evaluate)
    write_json(args.metrics, metrics)


if __name__ == "__main__":
    run_stage(main)
