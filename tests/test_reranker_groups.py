"""The reranker's training groups: mine's rows as they are, or negatives from BM25's top (`reranker.negatives`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TINY_MODEL, write_lines, write_params

from zh_retrieval.core.params import load_params
from zh_retrieval.retrieval.bm25 import bm25_run
from zh_retrieval.training.reranker_groups import draw_negatives, negative_pools, ranked_documents

FILLER = "显示磁盘的使用情况和剩余空间。"
CORPUS = {
    "tar": "压缩文件的命令：tar 和 gzip 把文件打包压缩。",
    "long": FILLER * 6 + "压缩目录里的日志。",  # several passages; only the last one holds 压缩
    "rm": "删除文件或者目录。",
    "cp": "复制文件和目录。",
    "ls": "列出目录里的文件。",
    "mkfs": "建立文件系统。",
    "locale": "设置当前的区域选项。",
}
TRAIN = {"q1": ("怎样压缩日志", "tar"), "q2": ("删除文件", "rm"), "q3": ("复制目录", "cp")}


def stage(name: str, *args: str | Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", f"zh_retrieval.stages.{name}", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=300)


def row(query_id: str, text: str, positives: list[str]) -> dict:
    return {"query_id": query_id, "query": text,
            "positive_passages": [{"docid": d, "text": CORPUS[d]} for d in positives], "negative_passages": []}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A dataset with one long document, cut and embedded by the tiny model as the pipeline does, and mine's
    rows written by hand (their negatives are what `bm25` replaces)."""
    root = tmp_path_factory.mktemp("groups")
    dataset = root / "dataset"
    dataset.mkdir()
    write_lines(dataset / "corpus.jsonl", [{"docid": d, "text": t} for d, t in CORPUS.items()])
    write_lines(dataset / "train.jsonl", [row(q, text, [d]) for q, (text, d) in TRAIN.items()])
    write_lines(dataset / "dev.jsonl", [row("q4", "区域选项", ["locale"])])
    write_lines(dataset / "test.jsonl", [row("q5", "文件系统", ["mkfs"])])
    params = write_params(root / "params.yaml", {
        "dataset": str(dataset), "base_model": str(TINY_MODEL), "embedding.passage_max_len": 24,
        "long_documents.overlap": 4, "rerank.depth": 3, "reranker.train_group_size": 3,
        "reranker.negatives": "bm25"})
    for name, args in (("prepare", (dataset, root / "prepared")), ("cut", (TINY_MODEL, dataset, root / "passages")),
                       ("embed", (TINY_MODEL, root / "passages", root / "embeddings"))):
        result = stage(name, *args, "--params", params)
        assert result.returncode == 0, f"{name}: {result.stderr[-2000:]}"
    mined = write_lines(root / "mined.jsonl", [
        {"query_id": q, "query": text, "pos": [CORPUS[d]], "neg": ["挖出的负例"] * 2,
         "pos_passages": [{"docid": d, "passage": 0}], "neg_passages": [{"docid": "ls", "passage": 0}] * 2,
         "neg_source": ["hard", "random"]} for q, (text, d) in TRAIN.items()])
    return {"root": root, "dataset": dataset, "params": params, "mined": mined}


def groups(workspace: dict[str, Path], out: Path, params: Path | None = None,
           train_file: Path | None = None) -> subprocess.CompletedProcess:
    root = workspace["root"]
    return stage("reranker_groups", TINY_MODEL, root / "embeddings", workspace["dataset"],
                 root / "prepared" / "train_queries.jsonl", train_file or workspace["mined"], out,
                 "--params", params or workspace["params"], "--passages", root / "passages")


def test_mined_groups_are_mines_rows_byte_for_byte_and_nothing_else_is_read(tmp_path: Path) -> None:
    train = write_lines(tmp_path / "train.jsonl", [{"query_id": "q1", "query": "问", "pos": ["答"], "neg": ["别的"]}])
    missing = tmp_path / "not-there"
    result = stage("reranker_groups", missing, missing, missing, missing, train, tmp_path / "out",
                   "--params", write_params(tmp_path / "params.yaml", {"reranker.negatives": "mined"}))
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "out" / "train.jsonl").read_bytes() == train.read_bytes()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["train.jsonl"]


def test_bm25_negatives_are_its_top_documents_past_the_positives_each_as_its_best_passage(
        workspace: dict[str, Path], tmp_path: Path) -> None:
    result = groups(workspace, tmp_path / "out")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    mined = [json.loads(line) for line in workspace["mined"].read_text(encoding="utf-8").splitlines()]
    params = load_params(workspace["params"])
    # as deep as the stage searches: which of the documents BM25 scores 0 fill a run's tail is bm25s's
    # choice, the same at the same depth
    run = bm25_run(CORPUS, {q: text for q, (text, _) in TRAIN.items()}, params.bm25, params.rerank.depth)
    assert len(rows) == len(mined)
    for grouped, original in zip(rows, mined, strict=True):
        query_id = grouped["query_id"]
        for kept in ("query", "pos", "pos_passages"):
            assert grouped[kept] == original[kept]
        top = sorted(run[query_id], key=lambda d: (-run[query_id][d], d))[:3]  # what rerank would read, ties by docid
        pool = [d for d in top if d != TRAIN[query_id][1]]
        drawn = [n["docid"] for n in grouped["neg_passages"]]
        assert len(drawn) == 2 and set(drawn) <= set(pool) and drawn == [d for d in pool if d in drawn]
        assert grouped["neg_source"] == ["bm25", "bm25"]
    assert sorted(run["q1"], key=lambda d: -run["q1"][d])[:2] == ["tar", "long"]  # 压缩 and 日志
    long_negative = rows[0]["neg_passages"][0]
    assert long_negative["docid"] == "long"
    assert long_negative["passage"] > 0 and "压缩" in rows[0]["neg"][0] and rows[0]["neg"][0] in CORPUS["long"]
    stats = json.loads((tmp_path / "out" / "groups.json").read_text())
    assert stats["rows"] == 3 and stats["depth"] == 3 and stats["negatives_per_row"] == 2
    assert groups(workspace, tmp_path / "again").returncode == 0
    assert (tmp_path / "again" / "train.jsonl").read_bytes() == (tmp_path / "out" / "train.jsonl").read_bytes()


def test_the_draw_takes_wanted_of_each_pool_by_the_seed() -> None:
    run = {"q1": {"a": 3.0, "b": 2.0, "pos": 9.0, "c": 2.0, "d": 1.0}, "q2": {"e": 1.0}}
    ranked = ranked_documents(run)
    assert ranked["q1"] == ["pos", "a", "b", "c", "d"]  # the tie of b and c broken by docid
    pools = negative_pools(ranked, {"q1": ["pos"], "q2": ["x"]}, depth=4)
    assert pools == {"q1": ["a", "b", "c"], "q2": ["e"]}  # the positive counts towards the depth
    drawn = draw_negatives(pools, wanted=2, seed=7)
    assert len(drawn["q1"]) == 2 and set(drawn["q1"]) <= set(pools["q1"]) and drawn["q2"] == ["e"]
    assert drawn == draw_negatives(pools, wanted=2, seed=7)
    assert len({tuple(draw_negatives(pools, 2, seed)["q1"]) for seed in range(20)}) == 3  # every pair of 3 comes up


def test_a_row_of_a_query_that_is_not_a_training_query_stops_the_stage(workspace: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    lines = workspace["mined"].read_text(encoding="utf-8").splitlines()
    stray = json.loads(lines[1]) | {"query_id": "q-dev"}
    train = write_lines(tmp_path / "train.jsonl", [json.loads(lines[0]), stray])
    result = groups(workspace, tmp_path / "out", train_file=train)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"{train}:2: query 'q-dev' is not a training query with a positive" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_a_query_whose_top_holds_only_its_positive_stops_the_stage(workspace: dict[str, Path], tmp_path: Path) -> None:
    """At depth 1 each query's top is its positive: a group with no negative, which FlagEmbedding divides by."""
    params = write_params(tmp_path / "params.yaml", {"rerank.depth": 1}, source=workspace["params"])
    result = groups(workspace, tmp_path / "out", params=params)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"{workspace['mined']}: query 'q1' has no negative in BM25's top 1" in result.stderr
    assert "(raise rerank.depth, or set reranker.negatives: mined)" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
