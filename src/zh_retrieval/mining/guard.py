"""The false-negative guard and the hard-negative window, in its two kinds (`mine.guard`).

A candidate whose text equals a positive's, or (unless `false_negative_margin` is null) that
scores above `(1 - false_negative_margin)` times the positive's score, is probably an unlabelled
positive and is not used (NV-Retriever's "95% of the positive" rule at 0.05). The kinds differ in
which scores they compare and which ranks the hard window covers:

- `TruncatedGuard`: documents ranked by their truncated text, compared with the positive's
  truncated score; hard negatives from the survivors within ranks hard_rank_min..hard_rank_max.
  When the base model ranks the positive low, every candidate above it is skipped and the query
  gets no hard negative.
- `BestPassageGuard`: documents ranked by their best passage (MaxP), compared with the positive's
  best passage; hard negatives from the first hard_rank_max - hard_rank_min + 1 survivors from
  rank hard_rank_min on (NV-Retriever's TopK-PercPos).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zh_retrieval.core.params import MineParams, PassageChoice
from zh_retrieval.mining.corpus import Passages
from zh_retrieval.retrieval.search import maxp_search, search


def random_floor(n_docs: int, params: MineParams) -> int:
    """Random negatives come from below this many top-ranked documents: random_rank_min where the corpus
    is larger than that, else the hard window's end."""
    return params.random_rank_min if n_docs > params.random_rank_min else params.hard_rank_max


@dataclass(frozen=True)
class TruncatedGuard:
    corpus_vectors: np.ndarray  # one unit vector per document row
    params: MineParams

    def search_depth(self, n_docs: int) -> int:
        # Everything ranked above the random pool: the hard window lies inside it.
        return min(n_docs, max(self.params.hard_rank_max, random_floor(n_docs, self.params)))

    def rank(self, query_vectors: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        return search(self.corpus_vectors, query_vectors, depth)

    def score(self, row: int, query_vector: np.ndarray) -> float:
        return float(self.corpus_vectors[row] @ query_vector)

    def last_rank(self, depth: int) -> int:
        """The deepest rank (1-based) the hard window scans."""
        return min(self.params.hard_rank_max, depth)

    def window_full(self, survivors: int) -> bool:
        return False  # the window is a fixed span of ranks, scanned whole


@dataclass(frozen=True)
class BestPassageGuard:
    passages: Passages
    params: MineParams

    def search_depth(self, n_docs: int) -> int:
        # The window counts survivors, so it may reach down to the random floor.
        return min(n_docs, max(self.params.hard_rank_max, self.params.random_rank_min))

    def rank(self, query_vectors: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        return maxp_search(self.passages.vectors, self.passages.owners, query_vectors, depth)

    def score(self, row: int, query_vector: np.ndarray) -> float:
        return float(self.passages.scores(row, query_vector).max())

    def last_rank(self, depth: int) -> int:
        return depth

    def window_full(self, survivors: int) -> bool:
        return survivors == self.params.hard_rank_max - self.params.hard_rank_min + 1


Guard = TruncatedGuard | BestPassageGuard


def make_guard(kind: PassageChoice, params: MineParams, corpus_vectors: np.ndarray, passages: Passages | None
               ) -> Guard:
    if kind == "best_passage":
        if passages is None:
            raise ValueError("mine.guard best_passage needs the passage embeddings")
        return BestPassageGuard(passages, params)
    return TruncatedGuard(corpus_vectors, params)


@dataclass(frozen=True)
class Threshold:
    """What counts as a likely unlabelled positive for one query."""

    score: float  # candidates scoring above it; inf when the margin rule is off
    positive_texts: frozenset[str]  # a candidate with a positive's exact text (a duplicate page)

    @classmethod
    def for_positive(cls, positive_score: float, margin: float | None, positive_texts: frozenset[str]
                     ) -> Threshold:
        score = float("inf") if margin is None else positive_score - margin * abs(positive_score)
        return cls(score, positive_texts)

    def likely_positive(self, text: str, score: float) -> bool:
        return score > self.score or text in self.positive_texts
