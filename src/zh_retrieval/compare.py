"""Which queries did fine-tuning help or hurt? Compare two evaluations query by query.

    python -m zh_retrieval.compare output/eval/base/test output/eval/finetuned/test --metric ndcg_at_10 --top 10

Reads each directory's per_query.jsonl and prints how many queries improved, stayed and degraded,
then the `--top` most improved and most degraded with their first relevant rank before and after.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zh_retrieval.core.errors import run_stage
from zh_retrieval.reporting.compare import compare, read_per_query, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path, help="an evaluation directory, e.g. output/eval/base/test")
    parser.add_argument("after", type=Path, help="e.g. output/eval/finetuned/test")
    parser.add_argument("--metric", default="ndcg_at_10")
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    changes = compare(read_per_query(args.before), read_per_query(args.after), args.metric)
    counts = summary(changes)
    print(f"{args.metric}: {counts['improved']} improved, {counts['unchanged']} unchanged, "
          f"{counts['degraded']} degraded of {len(changes)} queries")
    for title, rows in (("most improved", changes[: args.top]), ("most degraded", changes[::-1][: args.top])):
        print(f"\n{title}:\n{'query_id':<28} {'before':>7} {'after':>7} {'delta':>7}  first relevant rank")
        for c in rows:
            print(f"{c.query_id:<28} {c.before:7.3f} {c.after:7.3f} {c.delta:+7.3f}  {c.rank_before} -> {c.rank_after}")


if __name__ == "__main__":
    run_stage(main)
