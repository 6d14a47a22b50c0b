"""What storing MaxP's passage vectors in fp16 (as embed does) changes in the demo's metrics.

    python benchmarks/fp16_passages.py                       # base and fine-tuned, encoded in fp32 and in bf16
    python benchmarks/fp16_passages.py --precisions fp32     # one encoding precision

For each model and encoding precision, the demo corpus's passages are cut and encoded as embed
does (`split_many`, `encode`), the test queries as evaluate does, and MaxP is scored by
evaluate's own `score_vectors` twice: with the passage vectors in fp32, and rounded to fp16.
Prints MaxP nDCG@10 and recall@100 of both and the largest difference over every metric. Needs
the pipeline's outputs (`dvc repro`, or `dvc pull`) for the fine-tuned model.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from zh_retrieval.core.params import load_params
from zh_retrieval.data.embeddings import PASSAGE_DTYPE
from zh_retrieval.data.mldr import load_corpus
from zh_retrieval.data.passages import split_many
from zh_retrieval.data.preparation import prepare
from zh_retrieval.data.prepared import load_eval_queries
from zh_retrieval.retrieval.encode import encode, load_embedder, with_instruction
from zh_retrieval.retrieval.evaluation import score_vectors

ROOT = Path(__file__).resolve().parents[1]


def maxp_metrics(model_dir: Path, precision: str, params_file: Path, work: Path) -> dict[str, dict[str, float]]:
    """{"fp32": MaxP metrics, "fp16": the same with the passage vectors rounded to fp16}."""
    params = load_params(params_file)
    embedding, long_documents = params.embedding, params.long_documents
    corpus = load_corpus(ROOT / params.dataset)
    prepare(ROOT / params.dataset, work / "prepared", params.prepare, model_dir, embedding.passage_max_len)
    queries, qrels = load_eval_queries(work / "prepared" / "test")
    embedder = load_embedder(model_dir, embedding.pooling, precision)
    docids = list(corpus)
    pieces = split_many(embedder.tokenizer, [corpus[d] for d in docids], embedding.passage_max_len,
                        long_documents.overlap)
    passage_doc = np.repeat(np.arange(len(docids)), [len(p) for p in pieces])
    passages = encode(embedder, [p for doc in pieces for p in doc], embedding.passage_max_len, desc="passages")
    corpus_vectors = passages[np.flatnonzero(np.diff(passage_doc, prepend=-1))]
    query_ids = list(queries)
    query_vectors = encode(embedder, with_instruction([queries[q] for q in query_ids], embedding.query_instruction),
                           embedding.query_max_len, desc="queries")
    results = {}
    for storage, vectors in (("fp32", passages), ("fp16", passages.astype(PASSAGE_DTYPE))):
        metrics = score_vectors(query_ids, query_vectors, docids, corpus_vectors, (vectors, passage_doc), qrels,
                                work / f"{model_dir.name}-{precision}-{storage}", params.evaluate, "x")
        results[storage] = metrics["maxp"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, nargs="+",
                        default=[ROOT / "models" / "zh-mini-embedder", ROOT / "output" / "finetuned"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = parser.parse_args()
    print("| model | encoded in | MaxP nDCG@10, fp32 / fp16 passages | MaxP recall@100, fp32 / fp16 "
          "| largest difference, any metric |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            for precision in args.precisions:
                result = maxp_metrics(model, precision, args.params, Path(tmp))
                full, half = result["fp32"], result["fp16"]
                largest = max(abs(full[k] - half[k]) for k in full if isinstance(full[k], float))
                print(f"| {model.name} | {precision} | {full['ndcg_at_10']:.4f} / {half['ndcg_at_10']:.4f} "
                      f"| {full['recall_at_100']:.4f} / {half['recall_at_100']:.4f} | {largest:.4f} |", flush=True)


if __name__ == "__main__":
    main()
