"""The second stage: the reranked run, the cross-encoder check, training and scoring reading pairs alike.

The whole stages, on the demo, run in tests/test_pipeline.py's `dvc repro`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TINY_MODEL, write_lines, write_params

from zh_retrieval.core.errors import InputError
from zh_retrieval.core.files import check_cross_encoder_dir
from zh_retrieval.core.params import load_params
from zh_retrieval.retrieval.metrics import ranked
from zh_retrieval.retrieval.rerank import Pair, candidates, first_stage_run, passage_choice, reranked_run, score_pairs

sys.path.insert(0, str(ROOT / "scripts"))

import build_reranker  # noqa: E402


@pytest.fixture(scope="module")
def tiny_reranker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reranker") / "tiny-reranker"
    build_reranker.build(TINY_MODEL, out, seed=0)
    return out


def test_the_reranked_run_orders_the_top_by_the_reranker_and_keeps_the_rest_below() -> None:
    first_stage = {"q1": ["a", "b", "c", "d", "e"]}
    run = reranked_run(first_stage, {"q1": [0.1, 0.9, -0.3]}, depth=3)
    assert [docid for docid, _ in ranked(run["q1"])] == ["b", "a", "c", "d", "e"]
    assert run["q1"]["d"] < run["q1"]["c"] and run["q1"]["e"] < run["q1"]["d"]
    with pytest.raises(ValueError):  # a score missing for a candidate is never silently dropped
        reranked_run(first_stage, {"q1": [0.1, 0.9]}, depth=3)


def test_candidates_are_the_first_stages_order_and_a_missing_query_is_named(tmp_path: Path) -> None:
    run = {"q1": {"a": 0.2, "b": 0.7, "c": 0.5}}
    assert candidates(run, ["q1"], 2, tmp_path / "run.trec") == {"q1": ["b", "c", "a"]}
    with pytest.raises(InputError, match="no candidates for query q2"):
        candidates(run, ["q1", "q2"], 2, tmp_path / "run.trec")


def test_each_first_stage_names_its_run_and_how_passages_are_picked(tmp_path: Path) -> None:
    assert first_stage_run(tmp_path, "dev", "hybrid_rrf", True) == tmp_path / "hybrid/dev/rrf/run.trec"
    assert first_stage_run(tmp_path, "test", "dense", True) == tmp_path / "finetuned/test/maxp/run.trec"
    assert first_stage_run(tmp_path, "test", "dense", False) == tmp_path / "finetuned/test/run.trec"
    assert first_stage_run(tmp_path, "dev", "bm25", True) == tmp_path / "bm25/dev/run.trec"
    assert [passage_choice(s, True) for s in ("hybrid_weighted", "dense", "bm25")] == ["dense_best", "dense_best",
                                                                                       "bm25_best"]
    assert passage_choice("bm25", False) == "truncated"


def test_a_directory_that_is_not_a_cross_encoder_is_refused_by_name(tmp_path: Path, tiny_reranker: Path) -> None:
    check_cross_encoder_dir(tiny_reranker)
    with pytest.raises(InputError, match="not a cross-encoder: its architecture is BertModel") as error:
        check_cross_encoder_dir(TINY_MODEL)
    assert str(error.value).startswith(str(TINY_MODEL))
    two_labels = tmp_path / "two-labels"
    build_reranker.build(TINY_MODEL, two_labels, seed=0)
    config = json.loads((two_labels / "config.json").read_text())
    config["id2label"], config["label2id"] = {"0": "no", "1": "yes"}, {"no": 0, "yes": 1}
    (two_labels / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="the head has 2 outputs"):
        check_cross_encoder_dir(two_labels)
    (tiny_reranker.parent / "no-tokenizer").mkdir()
    for name in ("config.json", "model.safetensors"):
        (tiny_reranker.parent / "no-tokenizer" / name).write_bytes((tiny_reranker / name).read_bytes())
    with pytest.raises(InputError, match="no tokenizer files"):
        check_cross_encoder_dir(tiny_reranker.parent / "no-tokenizer")


def test_check_params_names_a_reranker_that_is_an_embedder_and_a_depth_past_the_run(tmp_path: Path) -> None:
    params = write_params(tmp_path / "params.yaml", {"reranker.base_model": "models/zh-mini-embedder"})
    result = subprocess.run([sys.executable, "-m", "zh_retrieval.stages.check_params", str(params),
                             str(tmp_path / "checked.txt")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and not (tmp_path / "checked.txt").exists()
    assert "`reranker.base_model`: models/zh-mini-embedder: not a cross-encoder" in result.stderr
    deep = write_params(tmp_path / "deep.yaml", {"rerank.depth": 101})
    with pytest.raises(InputError, match=r"`rerank.depth` is 101, but the first stage's run holds only the top 100"):
        load_params(deep)


def test_scores_are_the_models_logits_on_the_pairs_the_trainer_builds(tmp_path: Path, tiny_reranker: Path) -> None:
    """FlagReranker at scoring time and FlagEmbedding's training dataset give the model the same tokens
    (query, then passage, segment ids 0 and 1), so a reranker is scored as it was trained."""
    import torch
    from FlagEmbedding.abc.finetune.reranker import AbsRerankerDataArguments
    from FlagEmbedding.abc.finetune.reranker.AbsDataset import AbsRerankerTrainDataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    queries = {"q1": "如何查看磁盘空间", "q2": "压缩文件"}
    texts = ["df 命令显示文件系统的磁盘空间使用情况。", "tar 可以把多个文件打包并压缩。", "无关的文字。"]
    pairs = [Pair("q1", "d1", 0), Pair("q2", "d2", 0), Pair("q1", "d3", 0)]
    scores = score_pairs(tiny_reranker, queries, texts, pairs, max_length=128, query_max_len=32, batch_size=2)

    tokenizer = AutoTokenizer.from_pretrained(tiny_reranker)
    dataset = AbsRerankerTrainDataset.__new__(AbsRerankerTrainDataset)  # its tokenizing only, no data to load
    unused = write_lines(tmp_path / "unused.jsonl", [])  # the arguments check that the file exists
    dataset.args = AbsRerankerDataArguments(train_data=[str(unused)], query_max_len=32, passage_max_len=96)
    dataset.tokenizer = tokenizer
    model = AutoModelForSequenceClassification.from_pretrained(tiny_reranker).eval()
    for pair, text, score in zip(pairs, texts, scores, strict=True):
        trained = dataset.create_one_example(queries[pair.query_id], text)
        inputs = tokenizer(queries[pair.query_id], text, return_tensors="pt")
        assert trained["input_ids"] == inputs["input_ids"][0].tolist()
        assert trained["token_type_ids"] == inputs["token_type_ids"][0].tolist()
        with torch.inference_mode():
            assert score == pytest.approx(model(**inputs).logits[0, 0].item(), abs=1e-5)


def test_finetune_reranker_trains_on_mined_groups_and_writes_a_cross_encoder(tmp_path: Path,
                                                                           tiny_reranker: Path) -> None:
    rows = [{"query": f"问题{i}", "pos": [f"答案{i}" * 5], "neg": [f"别的{j}" * 5 for j in range(3)]}
            for i in range(8)]
    train = write_lines(tmp_path / "train.jsonl", rows)
    params = write_params(tmp_path / "params.yaml", {"reranker.batch_size": 4, "reranker.train_group_size": 4,
                                                     "reranker.max_length": 64, "reranker.query_max_len": 16,
                                                     "reranker.logging_steps": 1, "reranker.epochs": 1,
                                                     "reranker.lr": 3e-4})
    out = tmp_path / "reranker"
    result = subprocess.run([sys.executable, "-m", "zh_retrieval.stages.finetune_reranker", str(tiny_reranker),
                             str(train), str(out), "--params", str(params)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    check_cross_encoder_dir(out)
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and [e["loss"] for e in state["log_history"] if "loss" in e]
    arguments = json.loads((out / "training_args.json").read_text())
    assert arguments["output_dir"] == str(out) and arguments["learning_rate"] == 3e-4
    assert not (out / "training_args.bin").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "reranker", "train.jsonl"]

    too_few = write_lines(tmp_path / "few.jsonl", rows[:3])
    result = subprocess.run([sys.executable, "-m", "zh_retrieval.stages.finetune_reranker", str(tiny_reranker),
                             str(too_few), str(tmp_path / "other"), "--params", str(params)], capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 2 and "fewer than one batch of reranker.batch_size 4" in result.stderr
    assert not (tmp_path / "other").exists()


def test_the_demo_rerankers_pretraining_pairs_are_the_pairs_flagreranker_scores(tiny_reranker: Path) -> None:
    """scripts/build_reranker.py pretrains on `[CLS] query [SEP] passage [SEP]` built as FlagReranker builds
    it when the pipeline reranks: the query cut to query_max_len tokens, the passage to the rest."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    queries = {"long": "如何查看磁盘空间和文件系统" * 4, "short": "压缩文件"}
    texts = ["df 命令显示文件系统的磁盘空间使用情况。" * 5, "tar 可以把多个文件打包。"]
    pairs = [Pair("long", "d1", 0), Pair("short", "d2", 0)]
    scored = score_pairs(tiny_reranker, queries, texts, pairs, max_length=48, query_max_len=16, batch_size=2)

    tokenizer = AutoTokenizer.from_pretrained(tiny_reranker)
    inputs = build_reranker.pair_inputs(tokenizer, [(queries[p.query_id], t) for p, t in zip(pairs, texts)],
                                        max_length=48, query_max_len=16)
    assert inputs["input_ids"].shape[1] == 48  # the long pair fills max_length, the short one is padded to it
    assert inputs["token_type_ids"][0].tolist().index(1) == 1 + 16 + 1  # [CLS], 16 query tokens, [SEP]
    model = AutoModelForSequenceClassification.from_pretrained(tiny_reranker).eval()
    with torch.inference_mode():
        logits = model(**inputs).logits[:, 0].tolist()
    assert logits == pytest.approx(scored, abs=1e-5)


def test_pretraining_negatives_come_from_other_sections_nearest_first() -> None:
    """A section's other pieces may answer its heading too, so they are never a piece's hard negatives."""
    import numpy as np

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((40, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sections = np.repeat(np.arange(10), 4)
    nearest = build_reranker.nearest_other_sections(vectors, sections, k=5, block=7)
    for row in range(40):
        scores = vectors @ vectors[row]
        others = [i for i in np.argsort(-scores, kind="stable") if sections[i] != sections[row]]
        assert nearest[row].tolist() == others[:5]


def test_pretraining_pieces_fit_a_pair_and_only_a_sections_first_carries_its_title() -> None:
    body = "。".join(f"第{i}句讲的是磁盘和文件系统的用法" for i in range(40))
    pieces = build_reranker.pieces_of([("磁盘", body), ("短", "太短")], weight=4.0, first_section=7, seed=0)
    assert pieces and all(len(p.passage) <= max(build_reranker.PIECE_LENGTHS) for p in pieces)
    assert [p.title for p in pieces] == ["磁盘"] + [None] * (len(pieces) - 1)
    assert {p.section for p in pieces} == {7} and {p.weight for p in pieces} == {4.0}
    assert "".join(p.passage for p in pieces) in body  # consecutive pieces of the text, the short tail dropped
