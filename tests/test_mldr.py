from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from conftest import CORPUS, query_row, write_lines

from zh_retrieval.core.errors import InputError
from zh_retrieval.data.mldr import load_corpus, load_queries


def test_reads_corpus_and_queries(dataset_dir: Path) -> None:
    corpus = load_corpus(dataset_dir)
    assert corpus == CORPUS
    train = load_queries(dataset_dir, "train", corpus)
    assert [q.query_id for q in train] == ["q1", "q2", "q3"]
    assert train[0].positive_ids == ("d1",) and train[0].negative_ids == ("d2",)
    test = load_queries(dataset_dir, "test", corpus)
    assert test[1].positive_ids == ("d6", "d1")


def test_reads_gzipped_files_as_mldr_ships_them(dataset_dir: Path) -> None:
    for name in ("corpus.jsonl", "test.jsonl"):
        plain = dataset_dir / name
        with gzip.open(dataset_dir / f"{name}.gz", "wb") as f:
            f.write(plain.read_bytes())
        plain.unlink()
    corpus = load_corpus(dataset_dir)
    assert len(corpus) == len(CORPUS)
    assert [q.query_id for q in load_queries(dataset_dir, "test", corpus)] == ["q5", "q6"]


def test_integer_query_ids_become_strings(dataset_dir: Path) -> None:
    row = query_row("x", "区域", ["d5"])
    row["query_id"] = 7
    write_lines(dataset_dir / "test.jsonl", [row])
    assert load_queries(dataset_dir, "test", CORPUS)[0].query_id == "7"


def error_of(call) -> str:
    with pytest.raises(InputError) as caught:
        call()
    return str(caught.value)


def test_missing_dataset_directory(tmp_path: Path) -> None:
    message = error_of(lambda: load_corpus(tmp_path / "nowhere"))
    assert "nowhere" in message and "dataset directory not found" in message


def test_missing_split_file(dataset_dir: Path) -> None:
    (dataset_dir / "test.jsonl").unlink()
    assert "test.jsonl: file not found" in error_of(lambda: load_queries(dataset_dir, "test", CORPUS))


def test_malformed_json_line_names_file_and_line(dataset_dir: Path) -> None:
    lines = (dataset_dir / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    lines[2] = '{"docid": "d3", "text": '
    write_lines(dataset_dir / "corpus.jsonl", lines)
    message = error_of(lambda: load_corpus(dataset_dir))
    assert "corpus.jsonl:3: not valid JSON" in message


def test_query_without_positive_passages(dataset_dir: Path) -> None:
    row = query_row("q5", "区域", ["d5"])
    del row["positive_passages"]
    write_lines(dataset_dir / "test.jsonl", [query_row("q9", "区域", ["d5"]), row])
    message = error_of(lambda: load_queries(dataset_dir, "test", CORPUS))
    assert "test.jsonl:2: missing field `positive_passages`" in message


def test_query_without_text(dataset_dir: Path) -> None:
    row = query_row("q5", "区域", ["d5"])
    del row["query"]
    write_lines(dataset_dir / "test.jsonl", [row])
    assert "test.jsonl:1: missing field `query`" in error_of(lambda: load_queries(dataset_dir, "test", CORPUS))


def test_positive_docid_absent_from_corpus(dataset_dir: Path) -> None:
    write_lines(dataset_dir / "test.jsonl", [query_row("q5", "区域", ["d99"])])
    message = error_of(lambda: load_queries(dataset_dir, "test", CORPUS))
    assert "test.jsonl:1" in message and "'d99' is not in the corpus" in message


def test_empty_corpus(dataset_dir: Path) -> None:
    (dataset_dir / "corpus.jsonl").write_text("", encoding="utf-8")
    assert "corpus.jsonl: the corpus is empty" in error_of(lambda: load_corpus(dataset_dir))


def test_duplicate_docid_with_different_text(dataset_dir: Path) -> None:
    write_lines(dataset_dir / "corpus.jsonl", [{"docid": "d1", "text": "一"}, {"docid": "d1", "text": "二"}])
    assert "corpus.jsonl:2: docid 'd1' appears twice" in error_of(lambda: load_corpus(dataset_dir))


def test_duplicate_query_id(dataset_dir: Path) -> None:
    write_lines(dataset_dir / "test.jsonl", [query_row("q5", "区域", ["d5"]), query_row("q5", "设备", ["d6"])])
    assert "test.jsonl:2: query_id 'q5' appears twice" in error_of(lambda: load_queries(dataset_dir, "test", CORPUS))


def test_truncated_gzip(dataset_dir: Path) -> None:
    data = gzip.compress((dataset_dir / "corpus.jsonl").read_bytes())
    (dataset_dir / "corpus.jsonl").unlink()
    (dataset_dir / "corpus.jsonl.gz").write_bytes(data[: len(data) // 2])
    assert "corpus.jsonl.gz: gzip data is truncated or corrupt" in error_of(lambda: load_corpus(dataset_dir))


def test_text_that_is_not_utf8(dataset_dir: Path) -> None:
    (dataset_dir / "corpus.jsonl").write_bytes(json.dumps({"docid": "d1", "text": "x"}).encode() + b"\n\xff\xfe\n")
    assert "corpus.jsonl: not valid UTF-8" in error_of(lambda: load_corpus(dataset_dir))


def test_bundled_sample_is_valid_and_long() -> None:
    sample = Path(__file__).resolve().parents[1] / "data" / "sample"
    corpus = load_corpus(sample)
    splits = {split: load_queries(sample, split, corpus) for split in ("train", "dev", "test")}
    ids = [q.query_id for queries in splits.values() for q in queries]
    assert len(ids) == len(set(ids)), "splits must not share queries"
    name_queries = {split: [q for q in queries if not q.query_id.startswith("q-deep-")]
                    for split, queries in splits.items()}
    assert len(name_queries["test"]) == 150 and len(name_queries["dev"]) == 50 and len(name_queries["train"]) > 400
    assert sum(len(t) > 1024 for t in corpus.values()) > len(corpus) / 2, "documents should be long, as in MLDR"


def test_bundled_deep_queries_need_more_than_the_first_passage() -> None:
    """Each deep query is a sentence of its page that starts past the first 512 tokens and occurs in no other page,
    in the split of its page's NAME query."""
    from transformers import AutoTokenizer

    from zh_retrieval.data.passages import first_passage_end

    root = Path(__file__).resolve().parents[1]
    sample = root / "data" / "sample"
    tokenizer = AutoTokenizer.from_pretrained(root / "models" / "zh-mini-embedder")
    corpus = load_corpus(sample)
    split_of_page = {}
    deep: dict[str, list] = {}
    for split in ("train", "dev", "test"):
        for query in load_queries(sample, split, corpus):
            if query.query_id.startswith("q-deep-"):
                deep.setdefault(split, []).append(query)
            else:
                assert query.evidence_offset == 0
                split_of_page.update(dict.fromkeys(query.positive_ids, split))
    assert len(deep["test"]) >= 50, "enough deep test queries to measure the later-passage group"
    for split, queries in deep.items():
        for query in queries:
            (docid,) = query.positive_ids
            text = corpus[docid]
            assert text.startswith(query.text, query.evidence_offset)
            assert query.evidence_offset >= first_passage_end(tokenizer, text, 512)
            assert sum(query.text in other for other in corpus.values()) == 1
            assert split_of_page[docid] == split
