from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from conftest import CORPUS, TINY_MODEL

from zh_retrieval.embed import embed_corpus
from zh_retrieval.mine import TrainQuery, mine, mining_stats, run_mining
from zh_retrieval.params import EmbeddingParams, EncodeParams, MineParams

PARAMS = MineParams(seed=3, negatives_per_query=3, hard_ratio=1.0, hard_rank_min=2, hard_rank_max=4,
                    random_rank_min=8, false_negative_margin=0.0, use_dataset_negatives=False)


def fan(n: int, step: float = 0.2) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Docs d0..d{n-1} on the unit circle at angle i*step: the query (1, 0) ranks them in order d0, d1, ..."""
    angles = np.arange(n) * step
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    return [f"d{i}" for i in range(n)], vectors, np.array([[1.0, 0.0]], dtype=np.float32)


def run(positive: str, params: MineParams, n: int = 12, texts: list[str] | None = None, negatives=()):
    docids, vectors, query = fan(n, step=3.0 / n)
    texts = texts or [f"text {d}" for d in docids]
    return mine([TrainQuery("q", "问", (positive,), tuple(negatives))], docids, vectors, query, texts, params)[0]


def test_hard_negatives_come_from_the_rank_window() -> None:
    mined = run("d0", PARAMS)
    assert [d for d, _ in mined.negatives] == ["d1", "d2", "d3"]  # ranks 2..4, all of them
    assert mined.hard_ranks == [2, 3, 4]
    assert {s for _, s in mined.negatives} == {"hard"}


def test_positive_inside_the_window_is_never_a_negative() -> None:
    for seed in range(10):
        mined = run("d2", replace(PARAMS, seed=seed, negatives_per_query=2))
        assert "d2" not in [d for d, _ in mined.negatives]
        # d1 outranks the positive, so the false-negative guard holds it back: d3 is the one hard negative
        assert [d for d, s in mined.negatives if s == "hard"] == ["d3"]


def test_false_negative_guard_skips_candidates_close_to_the_positive() -> None:
    # With the positive at rank 3, d0 and d1 score above it; d1 is in the window and must be skipped.
    mined = run("d2", replace(PARAMS, negatives_per_query=2, hard_rank_min=2, hard_rank_max=5,
                              false_negative_margin=0.0))
    assert mined.skipped_false_negatives == 1
    assert [d for d, s in mined.negatives if s == "hard"] == ["d3", "d4"]
    # A margin wide enough to cover every candidate leaves no hard negative: random ones fill in.
    wide = run("d0", replace(PARAMS, false_negative_margin=1.0))
    assert wide.hard_ranks == [] and wide.hard_shortfall == 3
    assert [s for _, s in wide.negatives] == ["random"] * 3
    # Turned off, the guard lets d1 through even though it outranks the positive.
    off = run("d2", replace(PARAMS, negatives_per_query=2, false_negative_margin=None))
    assert [d for d, s in off.negatives if s == "hard"] == ["d1", "d3"] and off.skipped_false_negatives == 0


def test_text_duplicating_a_positive_is_not_a_negative() -> None:
    texts = [f"text d{i}" for i in range(12)]
    texts[2] = texts[0]
    mined = run("d0", PARAMS, texts=texts)
    assert "d2" not in [d for d, _ in mined.negatives] and mined.skipped_false_negatives == 1


def test_ratio_and_random_negatives_beyond_the_floor() -> None:
    params = replace(PARAMS, negatives_per_query=10, hard_ratio=0.7, hard_rank_max=10, random_rank_min=20)
    for seed in range(5):
        mined = run("d0", replace(params, seed=seed), n=60)
        sources = [s for _, s in mined.negatives]
        assert sources.count("hard") == 7 and sources.count("random") == 3
        hard_ranks = mined.hard_ranks
        assert all(2 <= r <= 10 for r in hard_ranks)
        random_ranks = [int(d[1:]) + 1 for d, s in mined.negatives if s == "random"]
        assert all(r > 20 for r in random_ranks), random_ranks


def test_small_corpus_draws_random_negatives_outside_the_hard_window() -> None:
    params = replace(PARAMS, negatives_per_query=4, hard_ratio=0.5, random_rank_min=1000)
    for seed in range(10):
        mined = run("d0", replace(params, seed=seed))
        random_ranks = [int(d[1:]) + 1 for d, s in mined.negatives if s == "random"]
        assert len(random_ranks) == 2 and all(r > 4 for r in random_ranks)


def test_dataset_negatives_come_first_when_kept() -> None:
    mined = run("d0", replace(PARAMS, use_dataset_negatives=True), negatives=["d9"])
    assert mined.negatives[0] == ("d9", "dataset")
    assert [s for _, s in mined.negatives] == ["dataset", "hard", "hard"]


def test_stats() -> None:
    mined = [run("d0", replace(PARAMS, negatives_per_query=4, hard_ratio=0.5, seed=s)) for s in range(4)]
    stats = mining_stats(mined)
    assert stats["queries"] == 4 and stats["negatives_per_query"] == 4
    assert stats["hard_negatives"] == 8 and stats["random_negatives"] == 8
    assert stats["hard_ratio_realised"] == 0.5
    assert 2 <= stats["hard_rank_q1"] <= stats["hard_rank_median"] <= stats["hard_rank_q3"] <= 4


def test_mining_file_is_byte_identical_across_runs(tmp_path: Path) -> None:
    embedding = EmbeddingParams(pooling="mean", query_instruction="", query_max_len=32, passage_max_len=64)
    encoding = EncodeParams(batch_size=4, precision="fp32")
    embed_corpus(TINY_MODEL, CORPUS.items(), tmp_path / "emb", embedding, encoding)
    queries = [TrainQuery("q1", "列出目录", ("d1",), ()), TrainQuery("q2", "删除文件", ("d3",), ())]
    params = replace(PARAMS, negatives_per_query=3, hard_ratio=0.7, hard_rank_max=4, false_negative_margin=0.05)
    outputs = []
    for name in ("a", "b"):
        stats = run_mining(TINY_MODEL, tmp_path / "emb", CORPUS, queries, tmp_path / name, embedding, encoding, params)
        outputs.append((tmp_path / name / "train.jsonl").read_bytes())
        assert stats["queries"] == 2 and stats["negatives_per_query"] == 3
    assert outputs[0] == outputs[1]
