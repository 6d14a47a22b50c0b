"""The README's recipe experiments: each setting against its alternative, over three seeds, through `dvc exp run`.

    python scripts/recipe_experiments.py run               # 12 runs as temporary experiments (~1 h on 2 cores)
    python scripts/recipe_experiments.py table > out.md    # their tables, from `dvc exp show --json`

Each run is `dvc exp run --temp -n <name> -S ...` on top of the committed params.yaml, so the
workspace is left alone and `dvc exp show` lists them all. MaxP against truncation needs no run
of its own: every evaluation scores both. `table` prints, per experiment, one row per seed and
the mean with the sample standard deviation, split by where the evidence lies.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (42, 1, 2)
GUARD = "mine.false_negative_margin=0.05"
EXPERIMENTS: dict[str, dict[str, list[str]]] = {  # experiment => arm => -S overrides
    "hard negatives, guard on": {
        "hard_ratio 0.7": ["mine.hard_ratio=0.7", GUARD],
        "hard_ratio 0 (random only)": ["mine.hard_ratio=0.0", GUARD],
    },
    "query instruction": {
        "on (train and evaluate)": [],
        "off": ['embedding.query_instruction=""'],
    },
}
RUN_NAMES = {arm: name for name, arm in (
    ("guard-hard07", "hard_ratio 0.7"), ("guard-hard0", "hard_ratio 0 (random only)"),
    ("instr-on", "on (train and evaluate)"), ("instr-off", "off"),
)}


def run_all() -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    for arms in EXPERIMENTS.values():
        for arm, overrides in arms.items():
            for seed in SEEDS:
                args = [a for o in [*overrides, f"seed={seed}"] for a in ("-S", o)]
                name = f"{RUN_NAMES[arm]}-seed{seed}"
                print(f"== {name}: {' '.join(args)}", flush=True)
                subprocess.run([sys.executable, "-m", "dvc", "exp", "run", "--temp", "-n", name, *args],
                               cwd=ROOT, env=env, check=True)


def experiment_metrics() -> dict[str, dict[str, Any]]:
    """run name => {"base": ..., "finetuned": ..., "bm25": ...} metrics, for every experiment DVC knows."""
    shown = json.loads(subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json", "-A"], cwd=ROOT,
                                      check=True, capture_output=True, text=True).stdout)
    found = {}
    for commit in shown:
        for experiment in commit.get("experiments") or []:
            for revision in experiment.get("revs", []):
                name = revision.get("name") or experiment.get("name")
                data = revision.get("data") or {}
                if data.get("rev") == "workspace":  # still running: DVC shows the workspace's metrics
                    continue
                data = data.get("metrics", {})
                if name and data:
                    found[name] = {Path(path).stem: values.get("data", {}) for path, values in data.items()}
    return found


def cell(values: list[float]) -> str:
    if not values:
        return "–"
    spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.3f}{spread}"


COLUMNS = [  # (header, metrics file, path inside it)
    ("fine-tuned nDCG@10", "finetuned", ("ndcg_at_10",)),
    ("evidence in first passage", "finetuned", ("by_evidence", "first_passage", "ndcg_at_10")),
    ("evidence later", "finetuned", ("by_evidence", "later", "ndcg_at_10")),
    ("fine-tuned MaxP nDCG@10", "finetuned", ("maxp", "ndcg_at_10")),
    ("MaxP, evidence in first passage", "finetuned", ("maxp", "by_evidence", "first_passage", "ndcg_at_10")),
    ("MaxP, evidence later", "finetuned", ("maxp", "by_evidence", "later", "ndcg_at_10")),
    ("base nDCG@10", "base", ("ndcg_at_10",)),
]


def value(metrics: dict[str, Any], stem: str, path: tuple[str, ...]) -> float | None:
    node: Any = metrics.get(stem, {})
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, float | int) else None


def tables(found: dict[str, dict[str, Any]]) -> str:
    out = []
    for experiment, arms in EXPERIMENTS.items():
        out += [f"### {experiment}", "", "| arm | seed | " + " | ".join(h for h, _, _ in COLUMNS) + " |",
                "|---" * (len(COLUMNS) + 2) + "|"]
        for arm in arms:
            runs = {seed: found.get(f"{RUN_NAMES[arm]}-seed{seed}") for seed in SEEDS}
            for seed, metrics in runs.items():
                if metrics:
                    cells = [value(metrics, stem, path) for _, stem, path in COLUMNS]
                    out.append(f"| {arm} | {seed} | " + " | ".join("–" if v is None else f"{v:.4f}" for v in cells)
                               + " |")
            present = [m for m in runs.values() if m]
            means = [cell([v for m in present if (v := value(m, stem, path)) is not None]) for _, stem, path in COLUMNS]
            out.append(f"| **{arm}**, mean ± sd | {len(present)} seeds | " + " | ".join(means) + " |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["run", "table"])
    args = parser.parse_args()
    if args.action == "run":
        run_all()
    else:
        print(tables(experiment_metrics()))


if __name__ == "__main__":
    main()
