"""Mining cases small enough to check by hand: documents on a unit circle, ranked by angle from the query."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from conftest import ROOT

from zh_retrieval.core.params import MineParams, Params, load_params
from zh_retrieval.data.prepared import TrainQuery
from zh_retrieval.mining.corpus import Passages
from zh_retrieval.mining.miner import mine

PARAMS = MineParams(seed=3, negatives_per_query=3, hard_ratio=1.0, hard_rank_min=2, hard_rank_max=4,
                    random_rank_min=8, false_negative_margin=0.0, positive="truncated", guard="truncated",
                    negative_text="truncated", guard_reference="positive_document", dataset_negative_share=0.0,
                    max_share_without_hard=1.0)


def project_params(**sections) -> Params:
    """params.yaml's values with these sections replaced: what a stage would parse from such a file."""
    return replace(load_params(ROOT / "params.yaml"), **sections)


def fan(n: int, step: float = 0.2) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Docs d0..d{n-1} on the unit circle at angle i*step: the query (1, 0) ranks them in order d0, d1, ..."""
    angles = np.arange(n) * step
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    return [f"d{i}" for i in range(n)], vectors, np.array([[1.0, 0.0]], dtype=np.float32)


def run(positive: str, params: MineParams, n: int = 12, texts: list[str] | None = None, negatives=()):
    docids, vectors, query = fan(n, step=3.0 / n)
    texts = texts or [f"text {d}" for d in docids]
    return mine([TrainQuery("q", "问", (positive,), tuple(negatives))], docids, vectors, query, texts, params)[0]


def with_passages(vectors: np.ndarray, later: dict[int, list[float]]) -> Passages:
    """Each document's first passage is its own vector; `later[row]` adds passages at those angles."""
    rows, starts = [], [0]
    for row, vector in enumerate(vectors):
        rows.append(vector)
        rows += [np.array([np.cos(a), np.sin(a)], dtype=np.float32) for a in later.get(row, [])]
        starts.append(len(rows))
    return Passages(np.stack(rows), np.array(starts), texts=None)  # mining itself needs no passage text


def run_passages(positive: str, params: MineParams, later: dict[int, list[float]], n: int = 40, step: float = 0.05):
    docids, vectors, query = fan(n, step)
    texts = [f"text {d}" for d in docids]
    passages = with_passages(vectors, later)
    return mine([TrainQuery("q", "问", (positive,), ())], docids, vectors, query, texts, params, passages)[0]


PASSAGE_GUARD = replace(PARAMS, guard="best_passage", positive="best_passage", random_rank_min=1000)
