"""report: the results table and the comparison plots, written from the metrics of one run.

    python -m zh_retrieval.stages.report METRICS_DIR EVAL_DIR REPORT_MD PLOTS_DIR --params params.yaml \
        [--page REPORT_HTML --dataset DATASET_DIR --prepared PREPARED_DIR --passages PASSAGES_DIR]

Writes REPORT_MD (reporting/report.py says what it holds) and, under PLOTS_DIR, the data of the
plots dvc.yaml declares, on test: recall@k and nDCG@k per model (at_k/<model>.csv) and how many
queries fine-tuning improved, left unchanged and degraded (per_query_change.csv).

With --page, also REPORT_HTML (reporting/page.py): the results and, for the dev queries where the
base, fine-tuned, first-stage and reranked runs differ most, their top 5 side by side with the
passage each matched: its text from the cut stage's spans (PASSAGES_DIR), the passages embed
encoded.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from zh_retrieval.core.errors import InputError, run_stage
from zh_retrieval.core.files import atomic_file
from zh_retrieval.core.params import Params, load_params
from zh_retrieval.data.mldr import iter_corpus
from zh_retrieval.data.prepared import load_eval_queries, load_evidence_groups
from zh_retrieval.reporting.compare import compare, read_per_query, summary
from zh_retrieval.reporting.page import System, differing_queries, needed_passages, render_page, summary_rows
from zh_retrieval.reporting.report import ROWS, at_k_rows, columns, load_metrics, render_report, write_csv
from zh_retrieval.retrieval.metrics import read_trec_run

logger = logging.getLogger(__name__)

PAGE_QUERIES = 12  # queries on the page
PAGE_TOP = 5  # documents per system and query


def page_systems(eval_dir: Path, params: Params) -> list[System]:
    """base, fine-tuned (MaxP when embed cut passages), the rerank stage's first stage, and reranked, on dev;
    the reranked runs only where the rerank stage wrote them."""
    from zh_retrieval.retrieval.matches import MATCHED, read_matched
    from zh_retrieval.retrieval.rerank import PAIRS, first_stage_run, read_pair_passages

    maxp = params.long_documents.maxp
    systems = []
    for stem, label in (("base", "base model"), ("finetuned", "fine-tuned")):
        run_dir = eval_dir / stem / "dev" / ("maxp" if maxp else "")
        matched = read_matched(run_dir / MATCHED) if maxp else None
        systems.append(_system(f"{label}{', MaxP' if maxp else ''}", run_dir, matched))
    reranked_dir = eval_dir / "reranked" / params.rerank.model / "dev"
    if (reranked_dir / "run.trec").is_file():
        read = read_pair_passages(reranked_dir / PAIRS)
        first_stage = first_stage_run(eval_dir, "dev", params.rerank.first_stage, maxp).parent
        systems.append(_system(f"first stage ({params.rerank.first_stage})", first_stage, read))
        systems.append(_system(f"reranked ({params.rerank.model} reranker)", reranked_dir, read))
    return systems


def _system(label: str, run_dir: Path, matched: dict[tuple[str, str], int] | None) -> System:
    per_query = read_per_query(run_dir)
    return System(label, read_trec_run(run_dir / "run.trec"), {q: row["ndcg_at_10"] for q, row in per_query.items()},
                  matched)


def write_page(path: Path, by_split: dict, eval_dir: Path, dataset_dir: Path, prepared_dir: Path,
               passages_dir: Path, params: Params) -> None:
    from zh_retrieval.data.cut import load_cut

    systems = page_systems(eval_dir, params)
    queries, qrels = load_eval_queries(prepared_dir / "dev")
    shown = differing_queries(systems, list(qrels), PAGE_QUERIES)
    wanted = needed_passages(systems, shown, PAGE_TOP)
    documents = {docid: text for docid, text in iter_corpus(dataset_dir) if docid in wanted}
    cut = load_cut(passages_dir, params.embedding.passage_max_len, params.long_documents.overlap)
    row_of = {docid: row for row, docid in enumerate(cut.docids)}
    cut_texts = {docid: cut.passage_texts(row_of[docid], text) for docid, text in documents.items()}

    def passage_text(docid: str, index: int) -> tuple[str, int]:
        if index >= len(cut_texts[docid]):
            raise InputError(passages_dir, f"document {docid} has {len(cut_texts[docid])} passages, but a run "
                             f"matched passage {index}", fix="re-run embed and the evaluations with these params")
        return cut_texts[docid][index], len(cut_texts[docid])

    shown_columns = columns(by_split["test"]["base"])[:2]
    rows = []
    for stem, label in ROWS:
        rows.append((stem, label))
        if params.long_documents.maxp and stem in ("base", "finetuned", "merged"):
            rows.append((f"{stem}.maxp", f"{label}, MaxP"))
    flat = {split: {**found, **{f"{s}.maxp": m["maxp"] for s, m in found.items() if "maxp" in m}}
            for split, found in by_split.items()}
    header = [f"{c.replace('_at_', '@')} ({split})" for split in ("test", "dev") for c in shown_columns]
    notes = [f"Model {params.raw['base_model']}, dataset {params.raw['dataset']}; the full report with its settings "
             "is report.md beside this page.",
             "The queries below are chosen on dev, where the project reads its choices, so that looking at them "
             "spends nothing of test."]
    page = render_page("Retrieval results", summary_rows(flat, rows, shown_columns), header, systems, shown, queries,
                       qrels, load_evidence_groups(prepared_dir / "dev"), passage_text, PAGE_TOP, notes)
    with atomic_file(path) as tmp:
        tmp.write_text(page, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metrics_dir", type=Path)
    parser.add_argument("eval_dir", type=Path, help="the evaluations' directory (output/eval)")
    parser.add_argument("report", type=Path)
    parser.add_argument("plots_dir", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--page", type=Path, help="also write the HTML page here")
    parser.add_argument("--dataset", type=Path, help="with --page: the dataset, for the documents' texts")
    parser.add_argument("--prepared", type=Path, help="with --page: prepare's output, for the dev queries")
    parser.add_argument("--passages", type=Path, help="with --page: the cut stage's output, for the passages' spans")
    args = parser.parse_args()
    if args.page and not (args.dataset and args.prepared and args.passages):
        parser.error("--page needs --dataset, --prepared and --passages")
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
    if args.page:
        write_page(args.page, metrics, args.eval_dir, args.dataset, args.prepared, args.passages, params)
    logger.info("wrote %s and the plot data under %s", args.report, args.plots_dir)


if __name__ == "__main__":
    run_stage(main)
