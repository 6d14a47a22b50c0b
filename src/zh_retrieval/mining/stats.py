"""What mining produced (mine.json), and the checks that stop the stage rather than train on a bad mix."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from zh_retrieval.core.errors import InputError
from zh_retrieval.core.params import MineParams
from zh_retrieval.data.prepared import TrainQuery
from zh_retrieval.mining.negatives import Negative
from zh_retrieval.mining.positives import PassageRef


@dataclass
class MinedQuery:
    query: TrainQuery
    positives: list[PassageRef]
    negatives: list[Negative] = field(default_factory=list)
    skipped_false_negatives: int = 0
    skipped_dataset_negatives: int = 0  # of those skipped, the dataset's own
    hard_wanted: int = 0

    @property
    def hard_ranks(self) -> list[int]:
        return [n.rank for n in self.negatives if n.source == "hard"]

    @property
    def hard_shortfall(self) -> int:
        """Hard negatives wanted but not found, replaced by random ones."""
        return self.hard_wanted - len(self.hard_ranks)


def mining_stats(mined: list[MinedQuery]) -> dict[str, float | int | None | dict[str, int]]:
    counts = {source: sum(1 for m in mined for n in m.negatives if n.source == source)
              for source in ("dataset", "hard", "random")}
    ranks = sorted(r for m in mined for r in m.hard_ranks)
    quartiles = statistics.quantiles(ranks, n=4, method="inclusive") if len(ranks) > 1 else [None] * 3
    mixed = counts["hard"] + counts["random"]
    wanting = [m for m in mined if m.hard_wanted]
    per_query = Counter(len(m.hard_ranks) for m in wanting)
    return {
        "queries": len(mined),
        "negatives_per_query": sum(len(m.negatives) for m in mined) / len(mined),
        "hard_negatives": counts["hard"],
        "random_negatives": counts["random"],
        "dataset_negatives": counts["dataset"],
        "hard_ratio_realised": counts["hard"] / mixed if mixed else 0.0,
        "hard_shortfall": sum(m.hard_shortfall for m in mined),
        # queries (of those meant to get any) by how many hard negatives they got: "0" is the silent failure
        "hard_negatives_per_query": {str(n): per_query[n] for n in sorted(per_query)},
        "queries_without_hard": per_query[0],
        "skipped_false_negatives": sum(m.skipped_false_negatives for m in mined),
        "skipped_dataset_negatives": sum(m.skipped_dataset_negatives for m in mined),
        "positives_past_first_passage": sum(1 for m in mined for p in m.positives if p.passage > 0),
        "hard_rank_q1": quartiles[0],
        "hard_rank_median": quartiles[1],
        "hard_rank_q3": quartiles[2],
    }


def check_corpus_size(corpus: dict[str, str], queries: list[TrainQuery], params: MineParams, params_file: Path) -> None:
    """Fail before any encoding if some query cannot get its negatives: FlagEmbedding would repeat them."""
    most_positives = max(len(q.positive_ids) for q in queries)
    available = len(corpus) - most_positives
    if params.negatives_per_query > available:
        raise InputError(params_file, f"{params.negatives_per_query} negatives per query (finetune.train_group_size "
                         f"- 1, or mine.negatives_per_query) but the corpus has only {available} documents besides "
                         f"a query's positives", fix="lower finetune.train_group_size or use a larger corpus")


def check_hard_coverage(mined: list[MinedQuery], params: MineParams, params_file: Path) -> None:
    """Stop when the guard left too many queries without a hard negative: random ones would silently replace them."""
    wanting = [m for m in mined if m.hard_wanted]
    without = sum(1 for m in wanting if not m.hard_ranks)
    if wanting and without / len(wanting) > params.max_share_without_hard:
        share = without / len(wanting)
        raise InputError(params_file, f"{without:,} of {len(wanting):,} training queries ({share:.0%}) got no hard "
                         f"negative, more than mine.max_share_without_hard "
                         f"({params.max_share_without_hard:.0%}): the false-negative guard skipped every candidate "
                         f"in their window (mine.guard: {params.guard}, false_negative_margin: "
                         f"{params.false_negative_margin})",
                         fix="use mine.guard: best_passage, a smaller false_negative_margin (or null), or raise "
                         "mine.max_share_without_hard to accept it")
