"""What reranking adds on the demo, over three seeds, through `dvc exp run`: the first stage, the base
reranker and the fine-tuned one, on dev, split by where each query's evidence lies.

    python scripts/rerank_experiments.py run              # the committed recipe, 3 runs (~25 min on 2 cores)
    python scripts/rerank_experiments.py run --arm rerank-lr1e-3-e3   # one alternative, 3 seeds
    python scripts/rerank_experiments.py run --arm rerank-bm25-negatives   # trained on BM25's top
    python scripts/rerank_experiments.py run --arm distill --arm distill-base-teacher   # distillation
    python scripts/rerank_experiments.py table > out.md   # from `dvc exp show --json`

Each run is `dvc exp run --temp -n <arm>-seed<S> -S seed=<S> -S ...` on the committed params.yaml
(seed 42 of the committed recipe is the committed run, restored from the run-cache where it is
there). The seed moves mining, the embedder's training (and so the first stage's hybrid) and the
reranker's; the base reranker is fixed, its candidates are not. An arm that changes only the
reranker's recipe re-runs only its stages once a seed's embedder is in the run-cache. Test is left
to the pipeline's own run, reported once. `table` ends with the fine-tuned embedder's dev metrics
for every arm shown: what distillation (`finetune.distill`) changes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from recipe_experiments import SEEDS, cell, experiment_metrics, value

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS = (("first stage (RRF hybrid)", "dev/hybrid_rrf"), ("reranked, base reranker", "dev/reranked_base"),
           ("reranked, fine-tuned reranker", "dev/reranked_finetuned"))
VIEWS = (("nDCG@10", ("ndcg_at_10",)), ("evidence in first passage", ("by_evidence", "first_passage", "ndcg_at_10")),
         ("evidence later", ("by_evidence", "later", "ndcg_at_10")), ("MRR@10", ("mrr_at_10",)))

# What distillation changes is the fine-tuned embedder: its own metrics, on dev.
EMBEDDER_VIEWS = (("nDCG@10", "dev/finetuned", ("ndcg_at_10",)),
                  ("MaxP nDCG@10", "dev/finetuned", ("maxp", "ndcg_at_10")),
                  ("MaxP, evidence in first passage", "dev/finetuned", ("maxp", "by_evidence", "first_passage",
                                                                        "ndcg_at_10")),
                  ("MaxP, later", "dev/finetuned", ("maxp", "by_evidence", "later", "ndcg_at_10")),
                  ("general nDCG@10", "dev/general_finetuned", ("ndcg_at_10",)))

COMMITTED = "rerank"
# arm => -S overrides on top of params.yaml: the reranker's fine-tuning recipes, and distillation.
ARMS: dict[str, list[str]] = {
    COMMITTED: [],
    "rerank-lr1e-4-e1": ["reranker.lr=1e-4", "reranker.epochs=1"],
    "rerank-lr3e-4-e1": ["reranker.lr=3e-4", "reranker.epochs=1"],
    "rerank-lr1e-3-e3": ["reranker.lr=1e-3", "reranker.epochs=3"],
    # These three ran when params.yaml trained the reranker at 1e-3 for 3 epochs, pinned here to stay as measured.
    "rerank-bm25-negatives": ["reranker.negatives=bm25", "reranker.lr=1e-3", "reranker.epochs=3"],
    "distill": ["finetune.distill=true", "reranker.lr=1e-3", "reranker.epochs=3"],  # teacher: the fine-tuned reranker
    "distill-base-teacher": ["finetune.distill=true", "rerank.model=base", "reranker.lr=1e-3",
                             "reranker.epochs=3"],  # a teacher that never saw the groups
    "rerank-bm25-negatives-lr1e-4-e1": ["reranker.negatives=bm25", "reranker.lr=1e-4", "reranker.epochs=1"],
}


def run_name(seed: int, arm: str = COMMITTED) -> str:
    return f"{arm}-seed{seed}"


def run_all(arms: list[str]) -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    for arm in arms:
        for seed in SEEDS:
            args = [a for o in [f"seed={seed}", *ARMS[arm]] for a in ("-S", o)]
            print(f"== {run_name(seed, arm)}: {' '.join(args)}", flush=True)
            subprocess.run([sys.executable, "-m", "dvc", "exp", "run", "--temp", "-n", run_name(seed, arm), *args],
                           cwd=ROOT, env=env, check=True)


def spread(values: list[float]) -> str:
    return f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""


def table(found: dict[str, dict], arm: str = COMMITTED) -> str:
    runs = {seed: found[run_name(seed, arm)] for seed in SEEDS if run_name(seed, arm) in found}
    lines = ["| dev | " + " | ".join(h for h, _ in VIEWS) + " |", "|---" * (len(VIEWS) + 1) + "|"]
    for label, stem in SYSTEMS:
        lines.append(f"| {label} | " + " | ".join(
            cell([v for m in runs.values() if (v := value(m, stem, path)) is not None]) for _, path in VIEWS) + " |")
    gains = [value(m, "dev/reranked_finetuned", ("ndcg_at_10",)) - value(m, "dev/hybrid_rrf", ("ndcg_at_10",))
             for m in runs.values()]
    tuned = [value(m, "dev/reranked_finetuned", ("ndcg_at_10",)) - value(m, "dev/reranked_base", ("ndcg_at_10",))
             for m in runs.values()]
    overrides = " ".join(ARMS[arm]) or "the committed params.yaml"
    heading = f"{arm} ({overrides}): {len(runs)} seeds ({', '.join(map(str, runs))}), mean ± sd:"
    return "\n".join([heading, "", *lines, "",
                      f"- reranked (fine-tuned) − first stage, nDCG@10: {statistics.mean(gains):+.3f}{spread(gains)}",
                      f"- fine-tuned − base reranker, nDCG@10: {statistics.mean(tuned):+.3f}{spread(tuned)}"])


def distills(arm: str) -> bool:
    return "finetune.distill=true" in ARMS[arm]


def undistilled(found: dict[str, dict], seed: int) -> dict | None:
    """A run of this seed whose embedder trained without a teacher: the committed arm's, else a reranker arm's."""
    return next((found[run_name(seed, arm)] for arm in ARMS if not distills(arm) and run_name(seed, arm) in found),
                None)


def embedder_table(found: dict[str, dict], arms: list[str]) -> str:
    """The fine-tuned embedder's dev metrics, one row an arm, and each distilling arm's MaxP nDCG@10
    against the undistilled embedder of the same seed (the pairing removes what the seed moves in both).
    Without `finetune.distill` the teacher stage copies mine's file, so every arm that changes only the
    reranker trains the committed embedder: any of them is the seed's reference."""
    lines = ["| dev, fine-tuned embedder | " + " | ".join(h for h, _, _ in EMBEDDER_VIEWS) + " |",
             "|---" * (len(EMBEDDER_VIEWS) + 1) + "|"]
    notes = []
    for arm in arms:
        runs = {seed: found[run_name(seed, arm)] for seed in SEEDS if run_name(seed, arm) in found}
        label = f"{arm} ({' '.join(ARMS[arm]) or 'committed'}) ({', '.join(map(str, runs))})"
        lines.append(f"| {label} | " + " | ".join(
            cell([v for m in runs.values() if (v := value(m, stem, path)) is not None])
            for _, stem, path in EMBEDDER_VIEWS) + " |")
        if not distills(arm):
            continue
        paired = [value(m, "dev/finetuned", ("maxp", "ndcg_at_10"))
                  - value(reference, "dev/finetuned", ("maxp", "ndcg_at_10"))
                  for seed, m in runs.items() if (reference := undistilled(found, seed)) is not None]
        if paired:
            notes.append(f"- {arm} − not distilled, MaxP nDCG@10, paired by seed ({len(paired)}): "
                         f"{statistics.mean(paired):+.3f}{spread(paired)}")
    return "\n".join([*lines, "", *notes])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["run", "table"])
    parser.add_argument("--arm", action="append", choices=list(ARMS), help=f"this arm only (default: {COMMITTED})")
    args = parser.parse_args()
    arms = args.arm or [COMMITTED]
    if args.action == "run":
        run_all(arms)
    else:
        found = experiment_metrics()
        shown = args.arm or [a for a in ARMS if any(run_name(seed, a) in found for seed in SEEDS)]
        print("\n\n".join([*(table(found, arm) for arm in shown), embedder_table(found, shown)]))


if __name__ == "__main__":
    main()
