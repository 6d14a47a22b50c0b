"""mine.json's counts, and the stop on too many queries without a hard negative."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from mining_cases import PARAMS, PASSAGE_GUARD, run, run_passages

from zh_retrieval.core.errors import InputError
from zh_retrieval.mining.stats import check_hard_coverage, mining_stats


def test_stats_count_queries_without_hard_negatives_and_the_stage_stops_on_too_many() -> None:
    params = replace(PASSAGE_GUARD, negatives_per_query=5, hard_rank_max=20, positive="truncated",
                     guard="truncated")
    mined = [run_passages("d24", params, {}), run_passages("d0", params, {})]
    stats = mining_stats(mined)
    assert stats["hard_negatives_per_query"] == {"0": 1, "5": 1} and stats["queries_without_hard"] == 1
    with pytest.raises(InputError, match=r"params.yaml: 1 of 2 training queries \(50%\) got no hard negative"):
        check_hard_coverage(mined, replace(params, max_share_without_hard=0.4), Path("params.yaml"))
    check_hard_coverage(mined, replace(params, max_share_without_hard=0.5), Path("params.yaml"))


def test_stats() -> None:
    mined = [run("d0", replace(PARAMS, negatives_per_query=4, hard_ratio=0.5, seed=s)) for s in range(4)]
    stats = mining_stats(mined)
    assert stats["queries"] == 4 and stats["negatives_per_query"] == 4
    assert stats["hard_negatives"] == 8 and stats["random_negatives"] == 8
    assert stats["hard_ratio_realised"] == 0.5
    assert 2 <= stats["hard_rank_q1"] <= stats["hard_rank_median"] <= stats["hard_rank_q3"] <= 4
