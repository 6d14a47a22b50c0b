"""The false-negative guard, in its two kinds, on rankings small enough to check by hand."""

from __future__ import annotations

from dataclasses import replace

from mining_cases import PARAMS, PASSAGE_GUARD, fan, run, run_passages, with_passages

from zh_retrieval.mining.guard import BestPassageGuard, Threshold, TruncatedGuard, random_floor


def test_positive_inside_the_window_is_never_a_negative() -> None:
    for seed in range(10):
        mined = run("d2", replace(PARAMS, seed=seed, negatives_per_query=2))
        assert "d2" not in [n.docid for n in mined.negatives]
        # d1 outranks the positive, so the false-negative guard holds it back: d3 is the one hard negative
        assert [n.docid for n in mined.negatives if n.source == "hard"] == ["d3"]


def test_false_negative_guard_skips_candidates_close_to_the_positive() -> None:
    # With the positive at rank 3, d0 and d1 score above it; d1 is in the window and must be skipped.
    mined = run("d2", replace(PARAMS, negatives_per_query=2, hard_rank_min=2, hard_rank_max=5,
                              false_negative_margin=0.0))
    assert mined.skipped_false_negatives == 1
    assert [n.docid for n in mined.negatives if n.source == "hard"] == ["d3", "d4"]
    # A margin wide enough to cover every candidate leaves no hard negative: random ones fill in.
    wide = run("d0", replace(PARAMS, false_negative_margin=1.0))
    assert wide.hard_ranks == [] and wide.hard_shortfall == 3
    assert [n.source for n in wide.negatives] == ["random"] * 3
    # Turned off, the guard lets d1 through even though it outranks the positive.
    off = run("d2", replace(PARAMS, negatives_per_query=2, false_negative_margin=None))
    assert [n.docid for n in off.negatives if n.source == "hard"] == ["d1", "d3"] and off.skipped_false_negatives == 0


def test_text_duplicating_a_positive_is_not_a_negative() -> None:
    texts = [f"text d{i}" for i in range(12)]
    texts[2] = texts[0]
    mined = run("d0", PARAMS, texts=texts)
    assert "d2" not in [n.docid for n in mined.negatives] and mined.skipped_false_negatives == 1


def test_dataset_negatives_pass_the_guard() -> None:
    # d1 scores above the positive d2: an unlabelled positive, even though the dataset calls it negative.
    mined = run("d2", replace(PARAMS, negatives_per_query=4, dataset_negative_share=0.5, hard_rank_max=6),
                negatives=["d1", "d9"])
    assert [n.docid for n in mined.negatives if n.source == "dataset"] == ["d9"]
    assert mined.skipped_dataset_negatives == 1
    assert [n.source for n in mined.negatives].count("hard") == 3, "the short dataset slot goes to mined negatives"


def test_passage_guard_compares_with_the_best_passage_not_the_truncated_document() -> None:
    later = {6: [0.01]}  # the positive d6 ranks 7th truncated, 2nd by its best passage
    params = replace(PASSAGE_GUARD, hard_rank_max=10)
    old = run_passages("d6", replace(params, guard="truncated"), later)
    assert old.skipped_false_negatives == 5  # d1..d5 outrank the truncated positive
    assert [n.docid for n in old.negatives if n.source == "hard"] == ["d7", "d8", "d9"]
    for seed in range(5):
        new = run_passages("d6", replace(params, seed=seed), later)
        assert new.skipped_false_negatives == 0
        assert {n.docid for n in new.negatives if n.source == "hard"} <= {f"d{i}" for i in (1, 2, 3, 4, 5, 7, 8, 9, 10)}


def test_guard_holds_candidates_against_the_passage_that_trains() -> None:
    later = {6: [0.01]}  # the positive d6 trains on passage 0 (7th), while its best passage ranks 2nd
    params = replace(PASSAGE_GUARD, hard_rank_max=10, positive="truncated")
    document = run_passages("d6", replace(params, guard_reference="positive_document"), later)
    assert document.skipped_false_negatives == 0, "d1..d5 lie below the positive document's best passage"
    assert {n.docid for n in document.negatives if n.source == "hard"} & {"d1", "d2", "d3", "d4", "d5"}
    for seed in range(5):
        trained = run_passages("d6", replace(params, guard_reference="trained_positive", seed=seed), later)
        assert trained.skipped_false_negatives == 5, "d1..d5 score above passage 0, the text written as pos"
        assert not {n.docid for n in trained.negatives if n.source == "hard"} & {"d1", "d2", "d3", "d4", "d5"}


def test_positive_ranked_low_leaves_no_hard_negative_under_the_truncated_guard_only() -> None:
    # The case: the base model ranks the positive 25th, below the whole 2..20 window.
    params = replace(PASSAGE_GUARD, negatives_per_query=5, hard_rank_max=20, positive="truncated")
    old = run_passages("d24", replace(params, guard="truncated"), {})
    assert old.hard_ranks == [] and old.hard_shortfall == 5
    new = run_passages("d24", params, {})
    # TopK-PercPos: the window is the first 19 candidates that pass the guard, all below the positive.
    assert len(new.hard_ranks) == 5 and all(26 <= r <= 44 for r in new.hard_ranks), new.hard_ranks
    assert new.skipped_false_negatives == 23  # d1..d23 (rank 2 onwards) score above the positive


def test_the_two_guard_kinds_differ_in_the_ranks_their_window_covers() -> None:
    params = replace(PARAMS, hard_rank_min=2, hard_rank_max=4, random_rank_min=8)
    _, vectors, _ = fan(12)
    truncated, passage = TruncatedGuard(vectors, params), BestPassageGuard(with_passages(vectors, {}), params)
    # The truncated guard scans ranks 2..4 whatever survives; the passage guard scans on until 3 survive.
    assert truncated.last_rank(12) == 4 and not truncated.window_full(3)
    assert passage.last_rank(12) == 12 and passage.window_full(3) and not passage.window_full(2)
    # Both search down to the random floor; on a corpus smaller than it, the truncated guard only to its window.
    assert truncated.search_depth(12) == passage.search_depth(12) == 8
    assert truncated.search_depth(6) == 4 and passage.search_depth(6) == 6
    assert random_floor(12, params) == 8 and random_floor(6, params) == 4


def test_threshold_is_relative_to_the_positive_and_off_without_a_margin() -> None:
    threshold = Threshold.for_positive(0.8, 0.05, frozenset({"a twin page"}))
    assert threshold.score == 0.8 - 0.05 * 0.8
    assert threshold.likely_positive("other", 0.77) and not threshold.likely_positive("other", 0.75)
    assert threshold.likely_positive("a twin page", -1.0)
    assert not Threshold.for_positive(0.8, None, frozenset()).likely_positive("other", 5.0)
