"""rerank: rescore the first stage's top candidates with a cross-encoder, and score the reranked runs.

    python -m zh_retrieval.stages.rerank RERANKER_DIR EVAL_DIR EMBEDDER_DIR EMBEDDINGS_DIR DATASET_DIR \
        PREPARED_DIR OUT_DIR METRICS_DIR --name NAME --params params.yaml [--passages PASSAGES_DIR]

The first stage is `rerank.first_stage`'s run under EVAL_DIR (output/eval: hybrid_rrf,
hybrid_weighted, dense or bm25), its top `rerank.depth` candidates per query rescored by the
cross-encoder in RERANKER_DIR, each through one passage (retrieval/rerank.py says which).
EMBEDDER_DIR and EMBEDDINGS_DIR are the fine-tuned embedder and its embed output: its passages,
and, for a dense or hybrid first stage, the query vectors that pick each candidate's passage.
PASSAGES_DIR, the cut stage's output, gives the passages' texts (without it they are cut again).

Writes, per SPLIT (dev and test), OUT_DIR/SPLIT/run.trec, per_query.jsonl and pairs.tsv (`query_id
docid passage score` for every pair scored: which passage of each candidate the reranker read), and
METRICS_DIR/SPLIT/NAME.json: the metrics (with `by_evidence`), the first stage, the depth, how the
passages were picked and how many pairs were scored.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from zh_retrieval.core.errors import InputError, run_stage
from zh_retrieval.core.files import atomic_dir, check_cross_encoder_dir, write_json
from zh_retrieval.core.params import EVAL_SPLITS, Params, load_params
from zh_retrieval.data.embeddings import load_corpus_embeddings
from zh_retrieval.data.mldr import load_corpus
from zh_retrieval.data.prepared import load_eval_queries, load_evidence_groups
from zh_retrieval.retrieval.metrics import read_trec_run, score_run
from zh_retrieval.retrieval.rerank import (
    PAIRS,
    Pair,
    candidates,
    dense_best_passages,
    first_stage_run,
    passage_choice,
    reranked_run,
    score_pairs,
    write_pairs,
)

logger = logging.getLogger(__name__)


def pick_passages(choice: str, params: Params, queries: dict[str, str], candidate_ids: dict[str, list[str]],
                  row_of: dict[str, int], passages, embedder) -> list[Pair]:
    depth = params.rerank.depth
    if choice == "truncated":
        return [Pair(q, d, 0) for q, docids in candidate_ids.items() for d in docids[:depth]]
    if choice == "bm25_best":
        from zh_retrieval.mining.positives import bm25_best_passages

        best = bm25_best_passages([(q, queries[q], docids[:depth]) for q, docids in candidate_ids.items()], row_of,
                                  passages, params.bm25)
        return [Pair(q, d, best[(q, d)]) for q, docids in candidate_ids.items() for d in docids[:depth]]
    from zh_retrieval.retrieval.encode import encode, with_instruction

    instruction = params.embedding.query_instruction if params.evaluate.use_query_instruction else ""
    ids = list(candidate_ids)
    vectors = encode(embedder, with_instruction([queries[q] for q in ids], instruction),
                     params.embedding.query_max_len, params.encode.batch_size, desc="queries")
    return dense_best_passages(dict(zip(ids, vectors)), candidate_ids, depth, row_of, passages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reranker_dir", type=Path, help="a cross-encoder directory")
    parser.add_argument("eval_dir", type=Path, help="the evaluations' directory holding the first stage's runs")
    parser.add_argument("embedder_dir", type=Path, help="the fine-tuned embedder (its tokenizer cut the passages)")
    parser.add_argument("embeddings_dir", type=Path, help="embed's output for that embedder")
    parser.add_argument("dataset_dir", type=Path)
    parser.add_argument("prepared_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("metrics_dir", type=Path)
    parser.add_argument("--name", required=True, help="the metrics files' name, e.g. reranked_finetuned")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--passages", type=Path, help="the cut stage's output, for the passages' texts")
    args = parser.parse_args()

    params = load_params(args.params)
    check_cross_encoder_dir(args.reranker_dir)
    choice = passage_choice(params.rerank.first_stage, params.long_documents.maxp)
    docids, _ = load_corpus_embeddings(args.embeddings_dir)
    row_of = {docid: row for row, docid in enumerate(docids)}
    corpus = load_corpus(args.dataset_dir)
    documents = [corpus[docid] for docid in docids]
    passages = embedder = None
    if choice != "truncated":
        from zh_retrieval.mining.corpus import load_passages

        passages = load_passages(args.embedder_dir, args.embeddings_dir, documents, params.embedding,
                                 params.long_documents, args.passages)
    if choice == "dense_best":
        from zh_retrieval.retrieval.encode import load_embedder

        embedder = load_embedder(args.embedder_dir, params.embedding.pooling, params.encode.precision)

    results = {}
    with atomic_dir(args.out_dir) as tmp:
        for split in EVAL_SPLITS:
            started = time.perf_counter()
            queries, qrels = load_eval_queries(args.prepared_dir / split)
            run_path = first_stage_run(args.eval_dir, split, params.rerank.first_stage, params.long_documents.maxp)
            if not run_path.is_file():
                raise InputError(run_path, "the first stage's run is not there",
                                 fix=f"run the evaluation that writes it (rerank.first_stage: "
                                     f"{params.rerank.first_stage})")
            candidate_ids = candidates(read_trec_run(run_path), list(qrels), params.rerank.depth, run_path)
            pairs = pick_passages(choice, params, queries, candidate_ids, row_of, passages, embedder)
            if passages is not None:
                passages.texts.prefetch(row_of[p.docid] for p in pairs)
                texts = [passages.texts.of(row_of[p.docid])[p.passage] for p in pairs]
            else:
                texts = [documents[row_of[p.docid]] for p in pairs]
            scores = score_pairs(args.reranker_dir, queries, texts, pairs, params.reranker.max_length,
                                 params.reranker.query_max_len, params.rerank.batch_size)
            by_query: dict[str, list[float]] = {}
            for pair, score in zip(pairs, scores, strict=True):
                by_query.setdefault(pair.query_id, []).append(score)
            (tmp / split).mkdir()
            write_pairs(tmp / split / PAIRS, pairs, scores)
            run = reranked_run(candidate_ids, by_query, params.rerank.depth)
            metrics = score_run(qrels, run, params.evaluate.k, tmp / split, args.name,
                                load_evidence_groups(args.prepared_dir / split))
            results[split] = metrics | {
                "num_queries": len(qrels), "first_stage": params.rerank.first_stage, "depth": params.rerank.depth,
                "passage": choice, "pairs_scored": len(pairs), "max_length": params.reranker.max_length}
            logger.info("%s %s: %d pairs reranked from %s in %.1fs; ndcg_at_10 %.4f", args.name, split, len(pairs),
                        params.rerank.first_stage, time.perf_counter() - started, metrics.get("ndcg_at_10", 0.0))
    for split, metrics in results.items():
        write_json(args.metrics_dir / split / f"{args.name}.json", metrics)


if __name__ == "__main__":
    run_stage(main)
