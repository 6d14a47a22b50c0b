from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = ROOT / "models" / "tiny-bert-zh"

CORPUS = {
    "d1": "列出目录内容的命令",
    "d2": "复制文件和目录",
    "d3": "删除文件或者目录",
    "d4": "显示磁盘使用情况",
    "d5": "设置当前的区域选项",
    "d6": "建立设备文件",
}


def write_params(path: Path, overrides: dict[str, Any], source: Path = ROOT / "params.yaml") -> Path:
    """The project's params.yaml with `overrides` ({"finetune.epochs": 2}) set, written to `path`.

    Round-trip YAML keeps the comments and layout; a key the file does not have is an error, so a
    renamed param fails here rather than leaving a test on the default it meant to change.
    """
    yaml = YAML()
    data = yaml.load(source.read_text(encoding="utf-8"))
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = data
        for part in parents:
            node = node[part]
        if leaf not in node:
            raise KeyError(f"{source} has no `{dotted}`")
        node[leaf] = value
    with path.open("w", encoding="utf-8") as f:
        yaml.dump(data, f)
    return path


def write_lines(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def query_row(query_id: str, text: str, positives: list[str], negatives: list[str] = ()) -> dict:
    return {
        "query_id": query_id,
        "query": text,
        "positive_passages": [{"docid": d, "text": CORPUS.get(d, "")} for d in positives],
        "negative_passages": [{"docid": d, "text": CORPUS.get(d, "")} for d in negatives],
    }


def shipped_texts() -> list[str]:
    """Every document and query of the two datasets that ship: the text BM25 tokenizes in the demo."""
    texts = []
    for dataset in ("sample", "general"):
        for path in sorted((ROOT / "data" / dataset).glob("*.jsonl")):
            rows = [json.loads(line) for line in path.open(encoding="utf-8")]
            texts += [row["text"] if "text" in row else row["query"] for row in rows]
    return texts


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    """A six-document dataset in MLDR's layout, small enough to check by hand."""
    root = tmp_path / "dataset"
    root.mkdir()
    write_lines(root / "corpus.jsonl", [{"docid": d, "text": t} for d, t in CORPUS.items()])
    write_lines(root / "train.jsonl", [
        query_row("q1", "列出目录", ["d1"], ["d2"]),
        query_row("q2", "复制文件", ["d2"]),
        query_row("q3", "删除文件", ["d3"]),
    ])
    write_lines(root / "dev.jsonl", [query_row("q4", "磁盘", ["d4"])])
    write_lines(root / "test.jsonl", [query_row("q5", "区域", ["d5"]), query_row("q6", "设备", ["d6", "d1"])])
    return root


_LOWERED = False


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Run every test but the pipeline's at a lower CPU priority (inherited by the processes it starts).

    Under pytest-xdist the pipeline's one `dvc repro` is the suite's critical path, and its training
    wants both cores; the other worker's tests then take the cycles it leaves idle instead of
    slowing it. Raising one's own niceness needs no privilege, and without xdist it changes nothing
    but the priority of the whole run.
    """
    global _LOWERED
    if not _LOWERED and item.path.name != "test_pipeline.py" and hasattr(os, "nice"):
        os.nice(19)
        _LOWERED = True
