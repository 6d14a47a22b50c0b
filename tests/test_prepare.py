from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_MODEL, query_row, write_lines

from zh_retrieval.core.errors import InputError
from zh_retrieval.core.params import PrepareParams
from zh_retrieval.data.preparation import prepare
from zh_retrieval.data.prepared import load_evidence_groups

PARAMS = PrepareParams(dev_from_train=1, dev_seed=0)


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_prepare_writes_training_and_evaluation_files(dataset_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    stats = prepare(dataset_dir, out, PARAMS)
    assert read_rows(out / "train_queries.jsonl") == [
        {"query_id": "q1", "query": "列出目录", "positive_ids": ["d1"], "negative_ids": ["d2"]},
        {"query_id": "q2", "query": "复制文件", "positive_ids": ["d2"], "negative_ids": []},
        {"query_id": "q3", "query": "删除文件", "positive_ids": ["d3"], "negative_ids": []},
    ]
    assert (out / "test/qrels.tsv").read_text(encoding="utf-8").splitlines() == ["q5 0 d5 1", "q6 0 d6 1",
                                                                                 "q6 0 d1 1"]
    assert read_rows(out / "test/queries.jsonl") == [{"query_id": "q5", "query": "区域"},
                                                     {"query_id": "q6", "query": "设备"}]
    assert read_rows(out / "dev/queries.jsonl") == [{"query_id": "q4", "query": "磁盘"}]
    assert (out / "dev/qrels.tsv").read_text(encoding="utf-8").splitlines() == ["q4 0 d4 1"]
    assert stats == {"corpus_documents": 6, "corpus_documents_over_1m_characters": 0,
                     "corpus_longest_document_characters": 9, "train_queries": 3, "train_dataset_negatives": 1,
                     "dev_drawn_from_train": False, "dev_queries": 1, "dev_qrels": 1, "test_queries": 2,
                     "test_qrels": 3}


def test_without_dev_jsonl_dev_is_drawn_from_train_and_left_out_of_it(dataset_dir: Path, tmp_path: Path) -> None:
    (dataset_dir / "dev.jsonl").unlink()
    drawn = {}
    for seed in range(6):
        stats = prepare(dataset_dir, tmp_path / f"seed{seed}", PrepareParams(dev_from_train=1, dev_seed=seed))
        assert stats["dev_drawn_from_train"] is True and stats["dev_queries"] == 1 and stats["train_queries"] == 2
        dev = [row["query_id"] for row in read_rows(tmp_path / f"seed{seed}" / "dev/queries.jsonl")]
        train = [row["query_id"] for row in read_rows(tmp_path / f"seed{seed}" / "train_queries.jsonl")]
        assert sorted(dev + train) == ["q1", "q2", "q3"] and not set(dev) & set(train)
        drawn[seed] = dev[0]
    assert len(set(drawn.values())) > 1, "the draw follows prepare.dev_seed"
    again = prepare(dataset_dir, tmp_path / "again", PrepareParams(dev_from_train=1, dev_seed=3))
    assert (tmp_path / "again/dev/queries.jsonl").read_bytes() == (tmp_path / "seed3/dev/queries.jsonl").read_bytes()
    assert again["train_queries"] == 2
    with pytest.raises(InputError, match="no dev.jsonl, and its 3 training queries cannot spare"):
        prepare(dataset_dir, tmp_path / "too-many", PrepareParams(dev_from_train=3, dev_seed=0))
    assert not (tmp_path / "too-many").exists()


def test_prepare_is_deterministic(dataset_dir: Path, tmp_path: Path) -> None:
    prepare(dataset_dir, tmp_path / "a", PARAMS)
    prepare(dataset_dir, tmp_path / "b", PARAMS)
    for name in ("train_queries.jsonl", "dev/queries.jsonl", "dev/qrels.tsv", "test/queries.jsonl", "test/qrels.tsv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_bad_input_leaves_previous_output_untouched(dataset_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    prepare(dataset_dir, out, PARAMS)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    write_lines(dataset_dir / "train.jsonl", [query_row("q1", "列出目录", ["d1"]), "{broken"])
    with pytest.raises(InputError, match="train.jsonl:2"):
        prepare(dataset_dir, out, PARAMS)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "prepared"], "no temporary debris"


def test_evaluation_queries_must_be_held_out(dataset_dir: Path, tmp_path: Path) -> None:
    write_lines(dataset_dir / "test.jsonl", [query_row("q1", "列出目录", ["d1"])])
    with pytest.raises(InputError, match="in both train and test"):
        prepare(dataset_dir, tmp_path / "prepared", PARAMS)
    assert not (tmp_path / "prepared").exists()


def test_dev_and_test_must_not_share_queries(dataset_dir: Path, tmp_path: Path) -> None:
    write_lines(dataset_dir / "dev.jsonl", [query_row("q5", "区域", ["d5"])])
    with pytest.raises(InputError, match="1 query ids are in both dev and test, e.g. 'q5'"):
        prepare(dataset_dir, tmp_path / "prepared", PARAMS)
    assert not (tmp_path / "prepared").exists()


def test_evidence_offsets_split_evaluation_queries_by_passage(dataset_dir: Path, tmp_path: Path) -> None:
    """With a 6-token passage (4 characters after [CLS] and [SEP]), evidence at character 5 lies past the first."""
    write_lines(dataset_dir / "test.jsonl", [query_row("q5", "区域", ["d5"]) | {"evidence_offset": 5},
                                             query_row("q6", "设备", ["d6", "d1"]) | {"evidence_offset": 0}])
    stats = prepare(dataset_dir, tmp_path / "short", PARAMS, TINY_MODEL, passage_max_len=6)
    assert read_rows(tmp_path / "short" / "test/queries.jsonl") == [
        {"query_id": "q5", "query": "区域", "evidence_offset": 5, "evidence": "later"},
        {"query_id": "q6", "query": "设备", "evidence_offset": 0, "evidence": "first_passage"},
    ]
    assert stats["test_evidence_first_passage"] == 1 and stats["test_evidence_later"] == 1
    assert load_evidence_groups(tmp_path / "short" / "test") == {"q5": "later", "q6": "first_passage"}
    prepare(dataset_dir, tmp_path / "long", PARAMS, TINY_MODEL, passage_max_len=512)
    assert load_evidence_groups(tmp_path / "long" / "test") == {"q5": "first_passage", "q6": "first_passage"}


def test_without_offsets_there_is_no_split_and_no_tokenizer_is_needed(dataset_dir: Path, tmp_path: Path) -> None:
    stats = prepare(dataset_dir, tmp_path / "prepared", PARAMS)
    assert load_evidence_groups(tmp_path / "prepared" / "test") == {}
    assert "test_evidence_later" not in stats


@pytest.mark.parametrize("offset", [-1, 9, "5", True])
def test_evidence_offset_must_point_into_the_positive_text(dataset_dir: Path, tmp_path: Path, offset) -> None:
    write_lines(dataset_dir / "test.jsonl", [query_row("q5", "区域", ["d5"]) | {"evidence_offset": offset}])
    with pytest.raises(InputError, match=r"test.jsonl:1: `evidence_offset` must be a character offset .*0 to 8"):
        prepare(dataset_dir, tmp_path / "prepared", PARAMS, TINY_MODEL)


def test_offsets_without_a_tokenizer_are_an_error(dataset_dir: Path, tmp_path: Path) -> None:
    write_lines(dataset_dir / "test.jsonl", [query_row("q5", "区域", ["d5"]) | {"evidence_offset": 5}])
    with pytest.raises(InputError, match="--tokenizer"):
        prepare(dataset_dir, tmp_path / "prepared", PARAMS)
    assert not (tmp_path / "prepared").exists()
