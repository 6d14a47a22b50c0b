from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import CORPUS, TINY_MODEL
from transformers import AutoTokenizer

from zh_retrieval.embed import embed_corpus
from zh_retrieval.encode import encode, load_embedder
from zh_retrieval.errors import InputError
from zh_retrieval.mine import Passages, TrainQuery, check_hard_coverage, mine, mining_stats, run_mining
from zh_retrieval.params import EmbeddingParams, EncodeParams, LongDocumentParams, MineParams
from zh_retrieval.passages import split_into_passages

PARAMS = MineParams(seed=3, negatives_per_query=3, hard_ratio=1.0, hard_rank_min=2, hard_rank_max=4,
                    random_rank_min=8, false_negative_margin=0.0, positive="first_passage", guard="document",
                    negative_text="document", dataset_negative_share=0.0, max_share_without_hard=1.0)


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


def test_dataset_negatives_take_their_share_sampled_with_the_seed() -> None:
    dataset = ["d9", "d10", "d11", "d8"]
    picks = set()
    for seed in range(12):
        mined = run("d0", replace(PARAMS, negatives_per_query=4, dataset_negative_share=0.5, seed=seed),
                    negatives=dataset)
        sources = [s for _, s in mined.negatives]
        assert sources == ["dataset", "dataset", "hard", "hard"]
        picks.add(tuple(d for d, s in mined.negatives if s == "dataset"))
    assert len(picks) > 3, "sampled, not the first ones in file order"
    none = run("d0", replace(PARAMS, dataset_negative_share=0.0), negatives=dataset)
    assert "dataset" not in [s for _, s in none.negatives]


def test_dataset_negatives_pass_the_guard() -> None:
    # d1 scores above the positive d2: an unlabelled positive, even though the dataset calls it negative.
    mined = run("d2", replace(PARAMS, negatives_per_query=4, dataset_negative_share=0.5, hard_rank_max=6),
                negatives=["d1", "d9"])
    assert [d for d, s in mined.negatives if s == "dataset"] == ["d9"]
    assert mined.skipped_dataset_negatives == 1
    assert [s for _, s in mined.negatives].count("hard") == 3, "the short dataset slot goes to mined negatives"


def with_passages(vectors: np.ndarray, later: dict[int, list[float]]) -> Passages:
    """Each document's first passage is its own vector; `later[row]` adds passages at those angles."""
    rows, starts = [], [0]
    for row, vector in enumerate(vectors):
        rows.append(vector)
        rows += [np.array([np.cos(a), np.sin(a)], dtype=np.float32) for a in later.get(row, [])]
        starts.append(len(rows))
    counts = np.diff(starts)
    return Passages(np.stack(rows), np.array(starts), lambda row: [f"d{row} p{i}" for i in range(counts[row])])


def run_passages(positive: str, params: MineParams, later: dict[int, list[float]], n: int = 40, step: float = 0.05):
    docids, vectors, query = fan(n, step)
    texts = [f"text {d}" for d in docids]
    passages = with_passages(vectors, later)
    return mine([TrainQuery("q", "问", (positive,), ())], docids, vectors, query, texts, params, passages)[0]


PASSAGE_GUARD = replace(PARAMS, guard="best_passage", positive="best_passage", random_rank_min=1000)


def test_positive_is_the_best_scoring_passage_of_its_document() -> None:
    # d6's third passage points at the query; its first (what truncation keeps) ranks 7th.
    best = run_passages("d6", PASSAGE_GUARD, {6: [1.0, 0.0, 2.0]})
    assert best.positives == [("d6", 2)]
    first = run_passages("d6", replace(PASSAGE_GUARD, positive="first_passage"), {6: [1.0, 0.0, 2.0]})
    assert first.positives == [("d6", 0)]


def test_passage_guard_compares_with_the_best_passage_not_the_truncated_document() -> None:
    later = {6: [0.01]}  # the positive d6 ranks 7th truncated, 2nd by its best passage
    params = replace(PASSAGE_GUARD, hard_rank_max=10)
    old = run_passages("d6", replace(params, guard="document"), later)
    assert old.skipped_false_negatives == 5  # d1..d5 outrank the truncated positive
    assert [d for d, s in old.negatives if s == "hard"] == ["d7", "d8", "d9"]
    for seed in range(5):
        new = run_passages("d6", replace(params, seed=seed), later)
        assert new.skipped_false_negatives == 0
        assert {d for d, s in new.negatives if s == "hard"} <= {f"d{i}" for i in (1, 2, 3, 4, 5, 7, 8, 9, 10)}


def test_positive_ranked_low_leaves_no_hard_negative_under_the_document_guard_only() -> None:
    # The case: the base model ranks the positive 25th, below the whole 2..20 window.
    params = replace(PASSAGE_GUARD, negatives_per_query=5, hard_rank_max=20, positive="first_passage")
    old = run_passages("d24", replace(params, guard="document"), {})
    assert old.hard_ranks == [] and old.hard_shortfall == 5
    new = run_passages("d24", params, {})
    # TopK-PercPos: the window is the first 19 candidates that pass the guard, all below the positive.
    assert len(new.hard_ranks) == 5 and all(26 <= r <= 44 for r in new.hard_ranks), new.hard_ranks
    assert new.skipped_false_negatives == 23  # d1..d23 (rank 2 onwards) score above the positive


def test_passage_negatives_are_their_best_passage_and_random_ones_any_passage() -> None:
    later = {row: [0.0] for row in range(8, 40)}  # every document from d8 on has a passage on the query
    params = replace(PASSAGE_GUARD, negative_text="best_passage", negatives_per_query=4, hard_ratio=0.5,
                     hard_rank_min=2, hard_rank_max=4, false_negative_margin=None)
    for seed in range(5):
        mined = run_passages("d0", replace(params, seed=seed), later)
        for (docid, source), index in zip(mined.negatives, mined.negative_passages):
            row = int(docid[1:])
            if source == "hard":
                assert index == (1 if row >= 8 else 0)
            else:
                assert 0 <= index < (2 if row >= 8 else 1)


def test_stats_count_queries_without_hard_negatives_and_the_stage_stops_on_too_many() -> None:
    params = replace(PASSAGE_GUARD, negatives_per_query=5, hard_rank_max=20, positive="first_passage",
                     guard="document")
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


def test_best_passage_training_file_names_each_text_and_checks_the_passages(tmp_path: Path) -> None:
    # 8-token passages with 2 of overlap cut CORPUS's longer documents in two or more.
    embedding = EmbeddingParams(pooling="mean", query_instruction="", query_max_len=32, passage_max_len=8)
    encoding = EncodeParams(batch_size=4, precision="fp32")
    long_documents = LongDocumentParams(maxp=True, overlap=2)
    embed_corpus(TINY_MODEL, CORPUS.items(), tmp_path / "emb", embedding, encoding, long_documents)
    queries = [TrainQuery("q1", "目录内容的命令", ("d1",), ("d2", "d4")), TrainQuery("q2", "删除文件", ("d3",), ())]
    params = replace(PARAMS, negatives_per_query=3, hard_ratio=0.7, hard_rank_max=4, false_negative_margin=0.05,
                     positive="best_passage", guard="best_passage", negative_text="best_passage",
                     dataset_negative_share=0.34)
    outputs = []
    for name in ("a", "b"):
        stats = run_mining(TINY_MODEL, tmp_path / "emb", CORPUS, queries, tmp_path / name, embedding, encoding,
                           params, long_documents)
        outputs.append((tmp_path / name / "train.jsonl").read_bytes())
    assert outputs[0] == outputs[1]
    assert stats["queries"] == 2 and stats["dataset_negatives"] + stats["skipped_dataset_negatives"] >= 1

    tokenizer = AutoTokenizer.from_pretrained(TINY_MODEL)
    rows = [json.loads(line) for line in outputs[0].decode("utf-8").splitlines()]
    for row in rows:
        named = [*zip(row["pos"], row["pos_passages"]), *zip(row["neg"], row["neg_passages"])]
        assert len(named) == 4
        for text, where in named:
            pieces = split_into_passages(tokenizer, CORPUS[where["docid"]], 8, 2)
            assert text == (CORPUS[where["docid"]] if where["passage"] == 0 else pieces[where["passage"]])
    # The best passage is the one the base model scores highest for the query.
    embedder = load_embedder(TINY_MODEL, "mean", "fp32")
    query = encode(embedder, ["目录内容的命令"], 32, 4)[0]
    pieces = split_into_passages(tokenizer, CORPUS["d1"], 8, 2)
    assert len(pieces) >= 2
    best = int(np.argmax(encode(embedder, pieces, 8, 4) @ query))
    assert rows[0]["pos_passages"] == [{"docid": "d1", "passage": best}]

    # Passages cut otherwise than embed cut them are an error, naming the embeddings; nothing is written.
    with pytest.raises(InputError, match="passage embeddings but splits into"):
        run_mining(TINY_MODEL, tmp_path / "emb", CORPUS, queries, tmp_path / "c", embedding, encoding, params,
                   LongDocumentParams(maxp=True, overlap=4))
    assert not (tmp_path / "c").exists()
    embed_corpus(TINY_MODEL, CORPUS.items(), tmp_path / "no-maxp", embedding, encoding)
    with pytest.raises(InputError, match="no passage embeddings"):
        run_mining(TINY_MODEL, tmp_path / "no-maxp", CORPUS, queries, tmp_path / "d", embedding, encoding, params,
                   long_documents)


def test_bm25_passage_positive_is_the_passage_sharing_the_querys_words(tmp_path: Path) -> None:
    embedding = EmbeddingParams(pooling="mean", query_instruction="", query_max_len=32, passage_max_len=8)
    encoding = EncodeParams(batch_size=4, precision="fp32")
    long_documents = LongDocumentParams(maxp=True, overlap=2)
    embed_corpus(TINY_MODEL, CORPUS.items(), tmp_path / "emb", embedding, encoding, long_documents)
    tokenizer = AutoTokenizer.from_pretrained(TINY_MODEL)
    pieces = split_into_passages(tokenizer, CORPUS["d1"], 8, 2)
    assert len(pieces) == 2 and "命令" in pieces[1] and "命令" not in pieces[0]
    queries = [TrainQuery("q1", "命令", ("d1",), ()), TrainQuery("q2", "列出", ("d1",), ())]
    params = replace(PARAMS, negatives_per_query=2, positive="bm25_passage", guard="best_passage",
                     false_negative_margin=None)
    run_mining(TINY_MODEL, tmp_path / "emb", CORPUS, queries, tmp_path / "mined", embedding, encoding, params,
               long_documents)
    rows = [json.loads(line) for line in (tmp_path / "mined" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [row["pos_passages"] for row in rows] == [[{"docid": "d1", "passage": 1}], [{"docid": "d1", "passage": 0}]]
    assert rows[0]["pos"] == [pieces[1]] and rows[1]["pos"] == [CORPUS["d1"]]
