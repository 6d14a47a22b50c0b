"""Picking dataset, hard and random negatives, on rankings small enough to check by hand."""

from __future__ import annotations

from dataclasses import replace

from mining_cases import PARAMS, PASSAGE_GUARD, run, run_passages


def test_hard_negatives_come_from_the_rank_window() -> None:
    mined = run("d0", PARAMS)
    assert [n.docid for n in mined.negatives] == ["d1", "d2", "d3"]  # ranks 2..4, all of them
    assert mined.hard_ranks == [2, 3, 4]
    assert {n.source for n in mined.negatives} == {"hard"}


def test_ratio_and_random_negatives_beyond_the_floor() -> None:
    params = replace(PARAMS, negatives_per_query=10, hard_ratio=0.7, hard_rank_max=10, random_rank_min=20)
    for seed in range(5):
        mined = run("d0", replace(params, seed=seed), n=60)
        sources = [n.source for n in mined.negatives]
        assert sources.count("hard") == 7 and sources.count("random") == 3
        hard_ranks = mined.hard_ranks
        assert all(2 <= r <= 10 for r in hard_ranks)
        random_ranks = [int(n.docid[1:]) + 1 for n in mined.negatives if n.source == "random"]
        assert all(r > 20 for r in random_ranks), random_ranks


def test_small_corpus_draws_random_negatives_outside_the_hard_window() -> None:
    params = replace(PARAMS, negatives_per_query=4, hard_ratio=0.5, random_rank_min=1000)
    for seed in range(10):
        mined = run("d0", replace(params, seed=seed))
        random_ranks = [int(n.docid[1:]) + 1 for n in mined.negatives if n.source == "random"]
        assert len(random_ranks) == 2 and all(r > 4 for r in random_ranks)


def test_dataset_negatives_take_their_share_sampled_with_the_seed() -> None:
    dataset = ["d9", "d10", "d11", "d8"]
    picks = set()
    for seed in range(12):
        mined = run("d0", replace(PARAMS, negatives_per_query=4, dataset_negative_share=0.5, seed=seed),
                    negatives=dataset)
        sources = [n.source for n in mined.negatives]
        assert sources == ["dataset", "dataset", "hard", "hard"]
        picks.add(tuple(n.docid for n in mined.negatives if n.source == "dataset"))
    assert len(picks) > 3, "sampled, not the first ones in file order"
    none = run("d0", replace(PARAMS, dataset_negative_share=0.0), negatives=dataset)
    assert "dataset" not in [n.source for n in none.negatives]


def test_passage_negatives_are_their_best_passage_and_random_ones_any_passage() -> None:
    later = {row: [0.0] for row in range(8, 40)}  # every document from d8 on has a passage on the query
    params = replace(PASSAGE_GUARD, negative_text="best_passage", negatives_per_query=4, hard_ratio=0.5,
                     hard_rank_min=2, hard_rank_max=4, false_negative_margin=None)
    for seed in range(5):
        mined = run_passages("d0", replace(params, seed=seed), later)
        for negative in mined.negatives:
            row = int(negative.docid[1:])
            if negative.source == "hard":
                assert negative.passage == (1 if row >= 8 else 0)
            else:
                assert 0 <= negative.passage < (2 if row >= 8 else 1)
