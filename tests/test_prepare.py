from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from conftest import query_row, write_lines
from zh_retrieval.errors import InputError
from zh_retrieval.mldr import Query
from zh_retrieval.prepare import choose_negatives, prepare
from zh_retrieval.params import PrepareParams

PARAMS = PrepareParams(seed=1, eval_split="test", negatives_per_query=3, use_dataset_negatives=True)


def test_negatives_exclude_positives_and_keep_dataset_negatives_first() -> None:
    docids = [f"d{i}" for i in range(10)]
    queries = [Query("q", "问", ("d0", "d1"), ("d2",))]
    for seed in range(20):
        (example,) = choose_negatives(queries, docids, PARAMS, random.Random(seed))
        assert len(example.negative_ids) == 3
        assert example.negative_ids[0] == "d2"
        assert not set(example.negative_ids) & {"d0", "d1"}
        assert len(set(example.negative_ids)) == 3


def test_dataset_negatives_can_be_dropped() -> None:
    params = PrepareParams(seed=1, eval_split="test", negatives_per_query=1, use_dataset_negatives=False)
    drawn = {choose_negatives([Query("q", "问", ("d0",), ("d2",))], ["d0", "d1", "d2", "d3"], params,
                              random.Random(s))[0].negative_ids for s in range(30)}
    assert drawn == {("d1",), ("d2",), ("d3",)}


def test_small_corpus_gives_what_it_has() -> None:
    (example,) = choose_negatives([Query("q", "问", ("d0",), ())], ["d0", "d1"], PARAMS, random.Random(0))
    assert example.negative_ids == ("d1",)


def test_prepare_writes_training_and_evaluation_files(dataset_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    stats = prepare(dataset_dir, out, PARAMS)
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["query"] for r in rows] == ["列出目录", "复制文件", "删除文件"]
    assert rows[0]["pos"] == ["列出目录内容的命令"] and rows[0]["neg"][0] == "复制文件和目录"
    assert all(len(r["neg"]) == 3 and not set(r["neg"]) & set(r["pos"]) for r in rows)
    assert (out / "qrels.tsv").read_text(encoding="utf-8").splitlines() == ["q5 0 d5 1", "q6 0 d6 1", "q6 0 d1 1"]
    queries = [json.loads(line) for line in (out / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    assert queries == [{"query_id": "q5", "query": "区域"}, {"query_id": "q6", "query": "设备"}]
    assert stats == {"corpus_documents": 6, "train_queries": 3, "train_negatives": 9, "eval_queries": 2,
                     "eval_qrels": 3}


def test_prepare_is_deterministic(dataset_dir: Path, tmp_path: Path) -> None:
    prepare(dataset_dir, tmp_path / "a", PARAMS)
    prepare(dataset_dir, tmp_path / "b", PARAMS)
    for name in ("train.jsonl", "queries.jsonl", "qrels.tsv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_bad_input_leaves_previous_output_untouched(dataset_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    prepare(dataset_dir, out, PARAMS)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    write_lines(dataset_dir / "train.jsonl", [query_row("q1", "列出目录", ["d1"]), "{broken"])
    with pytest.raises(InputError, match="train.jsonl:2"):
        prepare(dataset_dir, out, PARAMS)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "prepared"], "no temporary debris"


def test_evaluation_queries_must_be_held_out(dataset_dir: Path, tmp_path: Path) -> None:
    write_lines(dataset_dir / "test.jsonl", [query_row("q1", "列出目录", ["d1"])])
    with pytest.raises(InputError, match="in both train and test"):
        prepare(dataset_dir, tmp_path / "prepared", PARAMS)
    assert not (tmp_path / "prepared").exists()
