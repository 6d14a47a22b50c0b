from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CORPUS, ROOT, TINY_MODEL

from zh_retrieval.core.errors import InputError
from zh_retrieval.core.files import check_model_dir
from zh_retrieval.retrieval.encode import (
    BF16_WEIGHTS_MIN_COSINE,
    encode,
    length_sorted_batches,
    load_embedder,
    pad_batch,
    pool,
    resolve_precision,
    uses_bf16_weights,
    with_instruction,
)


def test_pooling_matches_flagembedding_definition() -> None:
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 0.0]]
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 2.0]], "padding must not count"


def test_encoding_is_normalised_and_independent_of_order_and_batching() -> None:
    embedder = load_embedder(TINY_MODEL, "mean")
    texts = list(CORPUS.values()) + ["短", "一段更长的文本" * 20]
    one_by_one = np.stack([encode(embedder, [t], 64, batch_size=1)[0] for t in texts])
    batched = encode(embedder, texts, 64, batch_size=3)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_pooling_changes_the_vectors() -> None:
    texts = list(CORPUS.values())
    cls = encode(load_embedder(TINY_MODEL, "cls"), texts, 64)
    mean = encode(load_embedder(TINY_MODEL, "mean"), texts, 64)
    assert not np.allclose(cls, mean)


def test_instruction_goes_before_the_query() -> None:
    instruction = "为这个句子生成表示以用于检索相关文章："
    assert with_instruction(["列出目录"], instruction) == [f"{instruction}列出目录"]
    assert with_instruction(["列出目录"], "") == ["列出目录"]


def test_not_a_model_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="model directory not found"):
        check_model_dir(tmp_path / "missing")
    with pytest.raises(InputError, match="no config.json"):
        check_model_dir(tmp_path)
    model = tmp_path / "model"
    shutil.copytree(TINY_MODEL, model)
    (model / "model.safetensors").unlink()
    with pytest.raises(InputError, match="no safetensors weights"):
        check_model_dir(model)


@pytest.mark.parametrize(("avx512_bf16", "amx", "expected"),
                         [(True, False, "bf16"), (False, True, "bf16"), (True, True, "bf16"), (False, False, "fp32")])
def test_auto_precision_is_bf16_wherever_the_cpu_does_it_natively(monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool,
                                                                   amx: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert resolve_precision("auto", torch.device("cpu")) == expected
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32", "an explicit precision is kept"


def test_embedder_reports_the_precision_it_runs_in() -> None:
    assert load_embedder(TINY_MODEL, "mean", "fp32").precision == "fp32"
    assert load_embedder(TINY_MODEL, "mean", "auto").precision in ("fp32", "bf16")


def test_batches_are_longest_first_and_stable() -> None:
    texts = ["aa", "b", "cccc", "dd", "e"]
    assert length_sorted_batches(texts, 2) == [[2, 0], [3, 1], [4]]


@pytest.mark.parametrize("side", ["right", "left"])
def test_numpy_padding_gives_the_tokenizers_own_arrays(side: str) -> None:
    """The feed pads token ids in NumPy: every array is the one the tokenizer's padding=True returns."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TINY_MODEL)
    tokenizer.padding_side = side
    texts = [text * (1 + 5 * i) for i, text in enumerate(CORPUS.values())] + ["", "ls -la"]
    expected = tokenizer(texts, padding=True, truncation=True, max_length=40, return_tensors="np")
    sequences = tokenizer(texts, truncation=True, max_length=40, return_attention_mask=False,
                          return_token_type_ids=False)["input_ids"]
    padded = pad_batch(sequences, tokenizer)
    assert padded.keys() == expected.keys() and "token_type_ids" in padded
    for name, array in expected.items():
        np.testing.assert_array_equal(padded[name], array.astype(np.int64))
        assert padded[name].dtype == np.int64


def test_the_encoder_runs_sdpa_attention() -> None:
    assert load_embedder(TINY_MODEL, "mean").model.config._attn_implementation == "sdpa"


def test_bf16_weights_on_a_gpu_keep_every_vector_within_the_bound_of_fp32() -> None:
    """A GPU encodes bf16 in bf16 weights; a CPU keeps autocast over fp32 weights (the demo's outputs). The demo's
    base model in bf16 weights, on the sample's longest passages: every cosine to fp32 at the bound or above."""
    from zh_retrieval.data.mldr import iter_corpus

    assert uses_bf16_weights("bf16", torch.device("cuda")) and uses_bf16_weights("bf16", torch.device("cuda:1"))
    assert not uses_bf16_weights("bf16", torch.device("cpu")) and not uses_bf16_weights("fp16", torch.device("cuda"))
    demo = ROOT / "models" / "zh-mini-embedder"
    on_cpu = load_embedder(demo, "mean", "bf16", torch.device("cpu"))
    assert not on_cpu.bf16_weights and next(on_cpu.model.parameters()).dtype == torch.float32
    weights = load_embedder(demo, "mean", "bf16", torch.device("cpu"), bf16_weights=True)
    assert next(weights.model.parameters()).dtype == torch.bfloat16
    texts = sorted((text for _, text in iter_corpus(ROOT / "data" / "sample")), key=len)[-64:]
    fp32 = encode(load_embedder(demo, "mean", "fp32"), texts, 512)
    cosines = np.sum(encode(weights, texts, 512) * fp32, axis=1)
    assert cosines.min() >= BF16_WEIGHTS_MIN_COSINE, sorted(cosines)[:5]
    with pytest.raises(ValueError, match="bf16 weights"):
        load_embedder(demo, "mean", "fp32", bf16_weights=True)
