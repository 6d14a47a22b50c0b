"""fetch's real huggingface_hub calls, against a local stand-in of the hub and against no hub at all."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_MODEL
from hub_stand_in import HubStandIn

from zh_retrieval.core.files import check_model_dir
from zh_retrieval.fetch import PRESETS
from zh_retrieval.reporting.card import front_matter, hub_id

COMMIT_MODEL = PRESETS["bge-base-zh-v1.5"].revision
COMMIT_DATA = PRESETS["mldr-zh"].revision


def run_fetch(endpoint: str, *args: str | Path, home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_ENDPOINT=endpoint, HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_ETAG_TIMEOUT="5", HF_HUB_DOWNLOAD_TIMEOUT="5")
    env.pop("HF_HUB_OFFLINE", None)  # CI runs offline; fetch is the one command that goes to a hub
    env.pop("TRANSFORMERS_OFFLINE", None)
    return subprocess.run([sys.executable, "-m", "zh_retrieval.fetch", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=120)


def test_model_preset_fetches_the_pinned_revision_and_only_safe_files(tmp_path: Path) -> None:
    files = {p.name: p.read_bytes() for p in TINY_MODEL.iterdir()}
    files["pytorch_model.bin"] = b"a pickle that must not be fetched"
    files["1_Pooling/config.json"] = b'{"pooling_mode_cls_token": true}'
    files["README.md"] = b"---\nlicense: mit\nlanguage: zh\n---\n# bge-base-zh-v1.5\n"
    with HubStandIn() as hub:
        hub.add("model", "BAAI/bge-base-zh-v1.5", COMMIT_MODEL, files)
        hub.add("model", "BAAI/bge-base-zh-v1.5", "0" * 40, {"config.json": b"{}"})  # another revision
        target = tmp_path / "models" / "bge"
        result = run_fetch(hub.endpoint, "bge-base-zh-v1.5", target, home=tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    assert (target / "REVISION").read_text() == f"BAAI/bge-base-zh-v1.5@{COMMIT_MODEL}\n"
    assert not (target / "pytorch_model.bin").exists() and not (target / ".download").exists()
    assert (target / "1_Pooling" / "config.json").is_file()
    assert (target / "model.safetensors").read_bytes() == (TINY_MODEL / "model.safetensors").read_bytes()
    check_model_dir(target)
    # The hub's card comes along: the fine-tuned model's card takes its license and repository id.
    assert front_matter(target / "README.md")["license"] == "mit" and hub_id(target) == "BAAI/bge-base-zh-v1.5"
    assert any(f"/api/models/BAAI/bge-base-zh-v1.5/revision/{COMMIT_MODEL}" in r for r in hub.requests)


@pytest.mark.parametrize("preset", ["bge-reranker-v2-m3", "bge-reranker-base"])
def test_reranker_preset_fetches_a_cross_encoder_the_rerank_stages_accept(tmp_path: Path, preset: str) -> None:
    """The hub's rerankers as their files are laid out, the tiny model's weights standing in."""
    import json

    from zh_retrieval.core.files import check_cross_encoder_dir

    source = PRESETS[preset]
    config = json.loads((TINY_MODEL / "config.json").read_text())
    config.update(architectures=["BertForSequenceClassification"], id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
    files = {p.name: p.read_bytes() for p in TINY_MODEL.iterdir() if p.name != "config.json"}
    files |= {"config.json": json.dumps(config).encode(), "sentencepiece.bpe.model": b"spm",
              "pytorch_model.bin": b"a pickle that must not be fetched", "onnx/model.onnx": b"not this either"}
    with HubStandIn() as hub:
        hub.add("model", source.repo_id, source.revision, files)
        target = tmp_path / "models" / preset
        result = run_fetch(hub.endpoint, preset, target, home=tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    assert (target / "REVISION").read_text() == f"{source.repo_id}@{source.revision}\n"
    assert (target / "sentencepiece.bpe.model").is_file()
    assert not (target / "pytorch_model.bin").exists() and not (target / "onnx").exists()
    check_cross_encoder_dir(target)


def test_dataset_preset_takes_the_zh_folder(tmp_path: Path) -> None:
    files = {f"mldr-v1.0-zh/{name}": name.encode() for name in ("corpus.jsonl.gz", "train.jsonl.gz", "test.jsonl.gz")}
    files["mldr-v1.0-en/corpus.jsonl.gz"] = b"not this language"
    with HubStandIn() as hub:
        hub.add("dataset", "Shitao/MLDR", COMMIT_DATA, files)
        result = run_fetch(hub.endpoint, "mldr-zh", tmp_path / "mldr", home=tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "mldr").iterdir()) == [
        "REVISION", "corpus.jsonl.gz", "test.jsonl.gz", "train.jsonl.gz"]
    assert (tmp_path / "mldr" / "REVISION").read_text().strip() == f"Shitao/MLDR@{COMMIT_DATA}"


def test_unknown_revision_is_named(tmp_path: Path) -> None:
    with HubStandIn() as hub:
        hub.add("model", "BAAI/bge-base-zh-v1.5", COMMIT_MODEL, {"config.json": b"{}"})
        result = run_fetch(hub.endpoint, "bge-base-zh-v1.5", tmp_path / "m", "--revision", "f" * 40,
                           home=tmp_path / "hf")
    assert result.returncode == 2
    assert f"has no revision {'f' * 40}" in result.stderr
    assert not (tmp_path / "m").exists()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_hub_gives_a_clear_error_and_no_directory(tmp_path: Path) -> None:
    target = tmp_path / "models" / "bge"
    target.parent.mkdir()
    result = run_fetch(f"http://127.0.0.1:{closed_port()}", "bge-base-zh-v1.5", target, home=tmp_path / "hf")
    assert result.returncode == 2
    assert "cannot download BAAI/bge-base-zh-v1.5@" in result.stderr
    assert "HF_ENDPOINT" in result.stderr and "dvc pull" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(target.parent.iterdir()) == [], "no partial directory"


@pytest.mark.parametrize("args", [["--repo-id", "x/y"], []])
def test_incomplete_arguments(tmp_path: Path, args: list[str]) -> None:
    result = run_fetch("http://127.0.0.1:1", *(args or []), tmp_path / "t", home=tmp_path / "hf")
    assert result.returncode == 2 and "give a preset" in result.stderr


def test_offline_mode_is_named_instead_of_tried(tmp_path: Path) -> None:
    env_home = tmp_path / "hf"
    env = dict(os.environ, HF_ENDPOINT="http://127.0.0.1:1", HF_HOME=str(env_home), TRANSFORMERS_OFFLINE="1")
    result = subprocess.run([sys.executable, "-m", "zh_retrieval.fetch", "bge-base-zh-v1.5", str(tmp_path / "m")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert "TRANSFORMERS_OFFLINE" in result.stderr and "unset" in result.stderr


def parquet_bytes(rows: list[dict]) -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


def test_t2retrieval_becomes_an_mldr_layout_dev_and_test_set(tmp_path: Path) -> None:
    from zh_retrieval.data.mldr import load_corpus, load_queries
    from zh_retrieval.fetch import T2RETRIEVAL

    corpus_repo, qrels_repo = T2RETRIEVAL
    passages = [{"id": f"p{i}", "text": f"第{i}段文字"} for i in range(4)]
    with HubStandIn() as hub:
        hub.add("dataset", corpus_repo.repo_id, corpus_repo.revision, {
            "data/corpus-00000-of-00001.parquet": parquet_bytes(passages),
            "data/queries-00000-of-00001.parquet": parquet_bytes([{"id": f"q{i}", "text": f"问题{i}"}
                                                                  for i in range(1, 6)]),
        })
        hub.add("dataset", qrels_repo.repo_id, qrels_repo.revision, {
            "data/dev-00000-of-00001.parquet": parquet_bytes([
                {"qid": "q1", "pid": "p1", "score": 2}, {"qid": "q1", "pid": "p3", "score": 1},
                {"qid": "q2", "pid": "p0", "score": 0},  # not relevant: q2 has no positive and is left out
                {"qid": "q3", "pid": "p2", "score": 1}, {"qid": "q4", "pid": "p0", "score": 1},
                {"qid": "q5", "pid": "p1", "score": 1}]),
        })
        target = tmp_path / "t2"
        result = run_fetch(hub.endpoint, "t2retrieval", target, home=tmp_path / "hf")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in target.iterdir()) == ["REVISION", "corpus.jsonl", "dev.jsonl", "test.jsonl"]
    corpus = load_corpus(target)
    assert corpus == {p["id"]: p["text"] for p in passages}
    dev, test = load_queries(target, "dev", corpus), load_queries(target, "test", corpus)
    assert len(dev) == 2 and len(test) == 2, "a seeded half of the 4 queries with a positive each"
    queries = {q.query_id: q for q in [*dev, *test]}
    assert sorted(queries) == ["q1", "q3", "q4", "q5"]
    assert (queries["q1"].text, queries["q1"].positive_ids) == ("问题1", ("p1", "p3"))
    assert (target / "REVISION").read_text().splitlines() == [f"{corpus_repo.repo_id}@{corpus_repo.revision}",
                                                              f"{qrels_repo.repo_id}@{qrels_repo.revision}"]
