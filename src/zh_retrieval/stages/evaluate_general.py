"""evaluate_general: score one model on the general-domain set, to see what fine-tuning cost elsewhere.

    python -m zh_retrieval.stages.evaluate_general MODEL_DIR GENERAL_DATASET_DIR OUT_DIR METRICS_DIR \
        --name NAME --params params.yaml

GENERAL_DATASET_DIR is a directory in MLDR's layout with corpus.jsonl, dev.jsonl and test.jsonl
(the bundled data/general, or a fetched C-MTEB set: `python -m zh_retrieval.fetch t2retrieval ...`).
Its corpus is encoded with the model (truncated at embedding.passage_max_len, as the domain
evaluation's main figure is), its dev and test queries searched, and the same metrics written as
evaluate writes for the domain: base, fine-tuned and merged each get METRICS_DIR/SPLIT/NAME.json
(general_<model>), so `dvc metrics diff` shows a general regression next to the domain gain. The
merge weight is chosen on dev.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from zh_retrieval.core.errors import run_stage
from zh_retrieval.core.files import atomic_dir, check_model_dir, write_json
from zh_retrieval.core.params import EVAL_SPLITS, EmbeddingParams, EncodeParams, EvaluateParams, load_params
from zh_retrieval.data.embeddings import corpus_precision
from zh_retrieval.data.mldr import load_corpus, load_queries
from zh_retrieval.retrieval.embedding import embed_corpus
from zh_retrieval.retrieval.encode import load_embedder
from zh_retrieval.retrieval.evaluation import evaluate


def evaluate_general(model_dir: Path, dataset_dir: Path, out_dir: Path, embedding: EmbeddingParams,
                     encoding: EncodeParams, params: EvaluateParams) -> dict[str, dict]:
    """split => its metrics; OUT_DIR/SPLIT/ gets each split's run."""
    check_model_dir(model_dir)
    corpus = load_corpus(dataset_dir)
    splits = {split: load_queries(dataset_dir, split, corpus) for split in EVAL_SPLITS}
    with tempfile.TemporaryDirectory(prefix="general-embeddings-") as tmp:
        vectors = embed_corpus(model_dir, corpus.items(), Path(tmp) / "embeddings", embedding, encoding)
        precision = corpus_precision(Path(tmp) / "embeddings")
    embedder = load_embedder(model_dir, embedding.pooling, encoding.precision)
    evaluated = {}
    with atomic_dir(out_dir) as tmp_out:
        for split, queries in splits.items():
            texts = {q.query_id: q.text for q in queries}
            qrels = {q.query_id: {d: 1 for d in q.positive_ids} for q in queries}
            metrics = evaluate(embedder, list(corpus), vectors, None, precision, texts, qrels, tmp_out / split,
                               embedding, encoding, params, out_dir.name)
            evaluated[split] = metrics | {"dataset": str(dataset_dir)}
    return evaluated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("dataset_dir", type=Path, help="the general-domain set, MLDR layout (corpus, dev, test)")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("metrics_dir", type=Path, help="gets SPLIT/NAME.json for every split")
    parser.add_argument("--name", help="the metrics files' name (default: general_ and the output directory's name)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    params = load_params(args.params)
    evaluated = evaluate_general(args.model_dir, args.dataset_dir, args.out_dir, params.embedding, params.encode,
                                 params.evaluate)
    for split, metrics in evaluated.items():
        write_json(args.metrics_dir / split / f"{args.name or 'general_' + args.out_dir.name}.json", metrics)


if __name__ == "__main__":
    run_stage(main)
