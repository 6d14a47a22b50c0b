"""Picking one query's negatives: the dataset's own, hard ones from the base model's ranking, random ones.

Per query, `negatives_per_query` negatives (default `finetune.train_group_size - 1`):
  1. a `dataset_negative_share` of them from the dataset's own `negative_passages`, sampled with
     the seed and guarded like mined ones;
  2. of the rest, a `hard_ratio` share of **hard** negatives, drawn uniformly from the guard's
     window of the base model's ranking (mining/guard.py);
  3. the remainder **random**: drawn uniformly from beyond rank `random_rank_min`, or, when the
     corpus is not that large, from outside the hard window.
Hard negatives teach the fine distinctions; random ones keep easy documents scoring low, which
hard negatives alone do not (the score floor drifts). When too few hard candidates survive the
guard, random ones fill the gap.

Every draw comes from one seeded generator, in the order above, so the same inputs and seed
give the same negatives.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from zh_retrieval.core.params import MineParams
from zh_retrieval.mining.corpus import Passages
from zh_retrieval.mining.guard import Guard, Threshold

Source = Literal["dataset", "hard", "random"]


@dataclass(frozen=True)
class Negative:
    docid: str
    source: Source
    passage: int  # the passage whose text trains; 0 is also the truncated document
    rank: int | None = None  # hard negatives: 1-based rank in the guard's ranking


@dataclass
class QueryNegatives:
    """One query's negatives as they are picked, and what the guard skipped on the way."""

    rng: random.Random
    params: MineParams
    docids: list[str]  # docid of each document row
    documents: list[str]  # text of each document row
    query_vector: np.ndarray
    passages: Passages | None
    used: set[int]  # document rows already a positive or a negative of this query
    negatives: list[Negative] = field(default_factory=list)
    skipped_false_negatives: int = 0
    skipped_dataset_negatives: int = 0  # of those skipped, the dataset's own

    def add(self, row: int, source: Source, rank: int | None = None) -> None:
        if self.params.negative_text == "truncated":
            passage = 0
        elif source == "random":
            passage = self.rng.randrange(self.passages.count(row))
        else:
            passage = self.passages.best(row, self.query_vector)
        self.negatives.append(Negative(self.docids[row], source, passage, rank))
        self.used.add(row)

    def add_dataset(self, rows: list[int], wanted: int, guard: Guard, threshold: Threshold) -> None:
        """Up to `wanted` of the dataset's own negatives that pass the guard, sampled."""
        if not wanted:
            return
        survivors = []
        for row in rows:
            if row in self.used:
                continue
            if threshold.likely_positive(self.documents[row], guard.score(row, self.query_vector)):
                self.skipped_false_negatives += 1
                self.skipped_dataset_negatives += 1
            else:
                survivors.append(row)
        for row in self.rng.sample(survivors, min(wanted, len(survivors))):
            self.add(row, "dataset")

    def add_hard(self, scores: np.ndarray, rows: np.ndarray, wanted: int, guard: Guard, threshold: Threshold) -> None:
        """Up to `wanted` hard negatives, sampled from the guard's window of this query's ranking, in rank order."""
        candidates: list[tuple[int, int]] = []  # (row, 1-based rank)
        for rank0 in range(self.params.hard_rank_min - 1, guard.last_rank(len(rows))):
            row = int(rows[rank0])
            if row < 0 or row in self.used:
                continue
            if threshold.likely_positive(self.documents[row], float(scores[rank0])):
                self.skipped_false_negatives += 1
                continue
            candidates.append((row, rank0 + 1))
            if guard.window_full(len(candidates)):
                break
        for row, rank in sorted(self.rng.sample(candidates, min(wanted, len(candidates))), key=lambda c: c[1]):
            self.add(row, "hard", rank)

    def add_random(self, top_rows: np.ndarray, wanted: int) -> None:
        """`wanted` random documents from outside `top_rows` (the ranks above the random floor) when the
        corpus has enough of them, else from anything not yet used."""
        n_docs = len(self.docids)
        above_floor = {int(r) for r in top_rows if r >= 0}
        pool_size = n_docs - len(self.used | above_floor)
        avoid = self.used | above_floor if pool_size >= wanted else set(self.used)
        wanted = min(wanted, n_docs - len(avoid))
        while wanted > 0:
            row = self.rng.randrange(n_docs)
            if row not in avoid:
                self.add(row, "random")
                avoid.add(row)
                wanted -= 1
