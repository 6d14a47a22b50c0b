"""The merge-weight sweep: domain against general nDCG@10 of the merged model, through `dvc exp run`.

    python scripts/merge_sweep.py run                   # one temporary experiment per weight (~2 min each on 2 cores)
    python scripts/merge_sweep.py table                 # the README's table; writes docs/merge-sweep.csv

Each run is `dvc exp run --temp -n merge-w<weight> -S merge.finetuned_weight=<weight>` on top of
the committed params: only merge and what reads the merged model re-run (training is the
committed one, so every point merges the same fine-tuned model). docs/merge-sweep.csv feeds the
"Merge weight sweep" plot of `dvc plots show`. Weight 0 is the base model and 1 the fine-tuned
one, up to the rounding of the average.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from recipe_experiments import ROOT, experiment_metrics, value  # noqa: E402

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
CSV = ROOT / "docs" / "merge-sweep.csv"
COLUMNS = [  # (header, metrics file, path inside it): dev, where the weight is chosen
    ("domain_ndcg_at_10", "dev/merged", ("ndcg_at_10",)),
    ("domain_maxp_ndcg_at_10", "dev/merged", ("maxp", "ndcg_at_10")),
    ("general_ndcg_at_10", "dev/general_merged", ("ndcg_at_10",)),
]


def run_name(weight: float) -> str:
    return f"merge-w{weight:g}".replace(".", "")


def run_all() -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    for weight in WEIGHTS:
        print(f"== {run_name(weight)}", flush=True)
        subprocess.run([sys.executable, "-m", "dvc", "exp", "run", "--temp", "-n", run_name(weight),
                        "-S", f"merge.finetuned_weight={weight}"], cwd=ROOT, env=env, check=True)


def sweep_rows(found: dict[str, dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for weight in WEIGHTS:
        metrics = found.get(run_name(weight))
        if metrics:
            rows.append([weight, *(value(metrics, stem, path) for _, stem, path in COLUMNS)])
    return rows


def table(rows: list[list[Any]]) -> str:
    lines = ["| fine-tuned weight | domain nDCG@10 | domain nDCG@10, MaxP | general nDCG@10 |", "|---|---|---|---|"]
    for weight, *cells in rows:
        lines.append(f"| {weight:g} | " + " | ".join("–" if c is None else f"{c:.4f}" for c in cells) + " |")
    return "\n".join(lines)


def write_csv(rows: list[list[Any]], path: Path = CSV) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["finetuned_weight", *(h for h, _, _ in COLUMNS)])
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["run", "table"])
    args = parser.parse_args()
    if args.action == "run":
        run_all()
    else:
        rows = sweep_rows(experiment_metrics())
        write_csv(rows)
        print(table(rows))


if __name__ == "__main__":
    main()
