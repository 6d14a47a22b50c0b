"""report: the results table and the comparison plots, written from the metrics of one run.

    python -m zh_retrieval.stages.report METRICS_DIR EVAL_DIR REPORT_MD PLOTS_DIR --params params.yaml

Writes REPORT_MD (reporting/report.py says what it holds) and, under PLOTS_DIR, the data of the
plots dvc.yaml declares, on test: recall@k and nDCG@k per model (at_k/<model>.csv) and how many
queries fine-tuning improved, left unchanged and degraded (per_query_change.csv).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from zh_retrieval.core.errors import run_stage
from zh_retrieval.core.files import atomic_file
from zh_retrieval.core.params import load_params
from zh_retrieval.reporting.compare import compare, read_per_query, summary
from zh_retrieval.reporting.report import at_k_rows, load_metrics, render_report, write_csv

logger = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metrics_dir", type=Path)
    parser.add_argument("eval_dir", type=Path, help="the evaluations' directory (output/eval)")
    parser.add_argument("report", type=Path)
    parser.add_argument("plots_dir", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    params = load_params(args.params)
    metrics = load_metrics(args.metrics_dir)
    changes = summary(compare(read_per_query(args.eval_dir / "base" / "test"),
                              read_per_query(args.eval_dir / "finetuned" / "test"), "ndcg_at_10"))
    for stem in ("base", "finetuned", "bm25"):
        if stem in metrics["test"]:
            write_csv(args.plots_dir / "at_k" / f"{stem}.csv", ["k", "recall", "ndcg"],
                      at_k_rows(metrics["test"][stem]))
    write_csv(args.plots_dir / "per_query_change.csv", ["outcome", "queries"],
              [[outcome, count] for outcome, count in changes.items()])
    report = render_report(metrics, params.raw, changes)
    with atomic_file(args.report) as tmp:
        tmp.write_text(report, encoding="utf-8")
    logger.info("wrote %s and the plot data under %s", args.report, args.plots_dir)


if __name__ == "__main__":
    run_stage(main)
