"""teacher: the reranker's scores for every training pair, for the embedder to distil (`finetune.distill`).

    python -m zh_retrieval.stages.teacher BASE_RERANKER_DIR FINETUNED_RERANKER_DIR TRAIN_JSONL OUT_DIR \
        --params params.yaml

With `finetune.distill: true`, the reranker `rerank.model` names (base or finetuned) scores each
row's query against its positive and every negative, and OUT_DIR/train.jsonl is mine's rows with
FlagEmbedding's `pos_scores` and `neg_scores` (raw logits, in the order of `pos` and `neg`); the
embedder then learns the teacher's distribution over each group (FlagEmbedding's
`knowledge_distillation`, `kl_div`: the softmax of the teacher's logits, beside the contrastive
loss). OUT_DIR/teacher.json says which reranker scored and how often it ranks the mined positive
first. With `finetune.distill: false`, OUT_DIR/train.jsonl is mine's file byte for byte and no
reranker is loaded, so a change of reranker leaves the embedder's training as it was.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

from zh_retrieval.core.errors import InputError, run_stage
from zh_retrieval.core.files import atomic_dir, check_cross_encoder_dir, read_jsonl, write_json
from zh_retrieval.core.params import load_params
from zh_retrieval.retrieval.rerank import cross_encoder_scores

logger = logging.getLogger(__name__)

TRAIN_FILE = "train.jsonl"


def read_rows(train_file: Path) -> list[dict]:
    rows = []
    for line, row in read_jsonl(train_file):
        for field in ("query", "pos", "neg"):
            if not isinstance(row.get(field), str if field == "query" else list):
                raise InputError(train_file, f"missing or malformed field `{field}`", line=line)
        rows.append(row)
    if not rows:
        raise InputError(train_file, "no training rows")
    return rows


def with_teacher_scores(rows: list[dict], scores: list[float]) -> list[dict]:
    """Each row with `pos_scores` and `neg_scores` taken in turn from `scores` (pos first, then neg, row by row)."""
    scored, at = [], 0
    for row in rows:
        positives, negatives = len(row["pos"]), len(row["neg"])
        scored.append(row | {"pos_scores": scores[at : at + positives],
                             "neg_scores": scores[at + positives : at + positives + negatives]})
        at += positives + negatives
    if at != len(scores):
        raise ValueError(f"{len(scores)} scores for {at} pairs")
    return scored


def positive_first_share(rows: list[dict]) -> float:
    """How often the teacher scores the mined positive above every mined negative."""
    return sum(max(r["pos_scores"]) > max(r["neg_scores"]) for r in rows) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base_reranker", type=Path, help="reranker.base_model")
    parser.add_argument("finetuned_reranker", type=Path, help="finetune_reranker's output")
    parser.add_argument("train_file", type=Path, help="mine's train.jsonl")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    params = load_params(args.params)
    if not args.train_file.is_file():
        raise InputError(args.train_file, "training file not found", fix="run the mine stage first")
    if not params.finetune.distill:
        with atomic_dir(args.out_dir) as tmp:
            shutil.copyfile(args.train_file, tmp / TRAIN_FILE)
        logger.info("finetune.distill is off: %s is mine's rows unchanged", args.out_dir / TRAIN_FILE)
        return
    reranker = args.finetuned_reranker if params.rerank.model == "finetuned" else args.base_reranker
    check_cross_encoder_dir(reranker)
    rows = read_rows(args.train_file)
    pairs = [(row["query"], text) for row in rows for text in [*row["pos"], *row["neg"]]]
    scores = cross_encoder_scores(reranker, pairs, params.reranker.max_length, params.reranker.query_max_len,
                                  params.rerank.batch_size)
    scored = with_teacher_scores(rows, scores)
    with atomic_dir(args.out_dir) as tmp:
        with (tmp / TRAIN_FILE).open("w", encoding="utf-8") as f:
            for row in scored:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        share = positive_first_share(scored)
        write_json(tmp / "teacher.json", {"reranker": str(reranker), "rows": len(rows), "pairs": len(pairs),
                                          "positive_ranked_first": share})
    logger.info("teacher %s scored %d pairs of %d rows; it ranks the mined positive first in %.1f%%", reranker,
                len(pairs), len(rows), 100 * share)


if __name__ == "__main__":
    run_stage(main)
