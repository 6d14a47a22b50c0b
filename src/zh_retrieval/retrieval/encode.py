"""Load a BERT-style embedder and turn texts into unit vectors, the way FlagEmbedding trains them.

The same code loads `BAAI/bge-base-zh-v1.5`, a fine-tuned output directory and the bundled tiny
model. Pooling and the query instruction are passed in (from params.yaml), so evaluation embeds
exactly as training did: `instruction + query` for queries, the bare text for passages.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from zh_retrieval.core.errors import InputError
from zh_retrieval.core.files import check_model_dir

logger = logging.getLogger(__name__)

@dataclass
class Embedder:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    pooling: str  # "cls" or "mean"
    device: torch.device
    precision: str  # "fp32", "fp16" or "bf16"
    bf16_weights: bool = False  # the weights themselves in bf16 (no autocast): a GPU's bf16 path


def visible_devices() -> list[str]:
    """The devices this process may encode or train on: one entry per visible GPU, or ["cpu"]."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{i}" for i in range(count)] or ["cpu"]


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matrix products in hardware rather than emulated."""
    return any(getattr(torch.cpu, check, lambda: False)() for check in ("_is_avx512_bf16_supported",
                                                                         "_is_amx_tile_supported"))


def resolve_precision(precision: str, device: torch.device) -> str:
    """"auto": bf16 where the hardware does it natively (GPUs from Ampere on, CPUs with AVX512-BF16 or AMX).

    There bf16 autocast is faster than fp32, with vectors close to fp32's (benchmarks/encode.py,
    docs/speed-and-memory.md); elsewhere bf16 is emulated and slower, so fp32. The choice moves the
    vectors, and so the metrics, so every stage that encodes records the precision it used.
    """
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


# bf16 weights must keep every vector this close to fp32's (benchmarks/bf16_weights.py measures it).
BF16_WEIGHTS_MIN_COSINE = 0.9999


def uses_bf16_weights(precision: str, device: torch.device) -> bool:
    """bf16 on a GPU: the weights in bf16. On a CPU, bf16 autocast over fp32 weights, as before."""
    return precision == "bf16" and device.type == "cuda"


def load_embedder(model_dir: Path, pooling: str, precision: str = "fp32", device: torch.device | None = None,
                  bf16_weights: bool | None = None) -> Embedder:
    """The model on `device`. bf16 there means bf16 weights on a GPU, where the forward pass then reaches ~43%
    of the card's peak instead of autocast's 33-35% (docs/speed-and-memory.md), and bf16 autocast over fp32
    weights on a CPU, whose demo outputs stay those of before; `bf16_weights` overrides the choice."""
    check_model_dir(model_dir)
    device = device or torch.device(visible_devices()[0])
    precision = resolve_precision(precision, device)
    if bf16_weights is None:
        bf16_weights = uses_bf16_weights(precision, device)
    if bf16_weights and precision != "bf16":
        raise ValueError(f"bf16 weights with precision {precision}")
    if precision == "fp16" and device.type != "cuda":
        raise InputError(model_dir, "fp16 needs a GPU", fix="use precision fp32 or bf16 on a CPU")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
        # SDPA: PyTorch's fused attention (transformers' default for BERT; named so it stays so).
        model = AutoModel.from_pretrained(model_dir, use_safetensors=True, trust_remote_code=False,
                                          attn_implementation="sdpa")
    except (OSError, ValueError) as error:
        raise InputError(model_dir, f"cannot load the model: {error}") from None
    model.eval().to(device)
    if bf16_weights:
        model.to(torch.bfloat16)
    return Embedder(model=model, tokenizer=tokenizer, pooling=pooling, device=device, precision=precision,
                    bf16_weights=bf16_weights)


def pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor, method: str) -> torch.Tensor:
    """Sentence vector from token vectors, as FlagEmbedding's `_sentence_embedding` computes it."""
    if method == "cls":
        return last_hidden_state[:, 0]
    if method == "mean":
        mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)
        return (last_hidden_state * mask).sum(dim=1) / mask.sum(dim=1)
    raise ValueError(f"unknown pooling method {method!r}")


def _autocast(embedder: Embedder) -> contextlib.AbstractContextManager:
    if embedder.precision == "fp32" or embedder.bf16_weights:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if embedder.precision == "bf16" else torch.float16
    return torch.autocast(device_type=embedder.device.type, dtype=dtype)


def length_sorted_batches(texts: list[str], batch_size: int) -> list[list[int]]:
    """Indices of texts in batches, longest texts first, so each batch is padded to similar lengths.

    Ties keep input order (a stable sort), so the batches, and the vectors, are the same every run.
    """
    return batches_by_length([len(text) for text in texts], batch_size)


def batches_by_length(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """`length_sorted_batches` by given lengths (the characters of each text, whether it is encoded from its
    text or from its token ids, so both see the same batches)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def pad_batch(sequences: list[list[int]], tokenizer: PreTrainedTokenizerBase) -> dict[str, np.ndarray]:
    """Token id sequences (specials included) as the model's inputs, padded in NumPy to the longest: the
    arrays the tokenizer's own `padding=True` gives (tests/test_encode.py compares them), without its
    per-token Python loop. On the side the tokenizer pads, with its pad id; segment ids 0 where the
    model takes them."""
    length = max((len(ids) for ids in sequences), default=0)
    input_ids = np.full((len(sequences), length), tokenizer.pad_token_id, dtype=np.int64)
    attention_mask = np.zeros((len(sequences), length), dtype=np.int64)
    left = tokenizer.padding_side == "left"
    for row, ids in enumerate(sequences):
        window = slice(length - len(ids), length) if left else slice(0, len(ids))
        input_ids[row, window] = ids
        attention_mask[row, window] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if "token_type_ids" in tokenizer.model_input_names:
        batch["token_type_ids"] = np.zeros_like(input_ids)
    return batch


Inputs = Callable[[list[int]], dict[str, np.ndarray]]  # a batch's indices => its padded model inputs


def _fed(embedder: Embedder, inputs: Inputs, batches: list[list[int]]
         ) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """Each batch's indices with its model inputs; batch i+1 is prepared while the model runs batch i.

    On a GPU the feed, not the model, is the bottleneck (benchmarks/gpu_encode.py,
    benchmarks/feed.py, docs/speed-and-memory.md). So a worker thread prepares the next batch
    (ids padded in NumPy by `pad_batch`, after the tokenizer where the input is text) and on a GPU
    pins its arrays, so that the copy to the device does not block the forward pass.
    """
    pin = embedder.device.type == "cuda"

    def prepare(ids: list[int]) -> dict[str, torch.Tensor]:
        tensors = {name: torch.from_numpy(array) for name, array in inputs(ids).items()}
        return {name: tensor.pin_memory() for name, tensor in tensors.items()} if pin else tensors

    with ThreadPoolExecutor(max_workers=1) as worker:
        upcoming = worker.submit(prepare, batches[0]) if batches else None
        for index, ids in enumerate(batches):
            batch = upcoming.result()
            if index + 1 < len(batches):
                upcoming = worker.submit(prepare, batches[index + 1])
            yield ids, batch


def text_inputs(embedder: Embedder, texts: list[str], max_length: int) -> Inputs:
    """Texts tokenized (the fast tokenizer's batch call, on every core) without padding, then padded in NumPy."""
    def inputs(ids: list[int]) -> dict[str, np.ndarray]:
        sequences = embedder.tokenizer([texts[i] for i in ids], truncation=True, max_length=max_length,
                                       return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        return pad_batch(sequences, embedder.tokenizer)

    return inputs


def id_inputs(embedder: Embedder, sequences: Sequence[np.ndarray]) -> Inputs:
    """Token id sequences already cut and tokenized (data/cut.py), padded in NumPy: no tokenizer in the loop."""
    return lambda ids: pad_batch([sequences[i] for i in ids], embedder.tokenizer)


def encode(
    embedder: Embedder, texts: list[str], max_length: int, batch_size: int = 32, desc: str = "encode"
) -> np.ndarray:
    """L2-normalised float32 vectors, one row per text, in the order given.

    Texts go through the model longest first, padded per batch, so a batch of short texts is
    not padded to the longest text of the corpus; the rows are put back in input order.
    """
    return encode_in_order(embedder, text_inputs(embedder, texts, max_length),
                           length_sorted_batches(texts, batch_size), len(texts), desc)


def encode_ids(embedder: Embedder, sequences: Sequence[np.ndarray], lengths: Sequence[int], batch_size: int = 32,
               desc: str = "encode") -> np.ndarray:
    """`encode` from token ids: one row per sequence, in the order given, batched by `lengths` (each sequence's
    text's characters: the batches `encode` forms from the texts, and so the same vectors)."""
    return encode_in_order(embedder, id_inputs(embedder, sequences), batches_by_length(lengths, batch_size),
                           len(sequences), desc)


def encode_in_order(embedder: Embedder, inputs: Inputs, batches: list[list[int]], rows: int, desc: str) -> np.ndarray:
    out = np.zeros((rows, embedder.model.config.hidden_size), dtype=np.float32)
    out[[i for batch in batches for i in batch]] = encode_batches(embedder, inputs, batches, desc)
    return out


def encode_batches(embedder: Embedder, inputs: Inputs, batches: list[list[int]], desc: str = "encode") -> np.ndarray:
    """The vectors of `batches` (indices for `inputs`), one row per index, in the batches' order."""
    rows = sum(len(batch) for batch in batches)
    out = np.zeros((rows, embedder.model.config.hidden_size), dtype=np.float32)
    row = 0
    with torch.inference_mode(), _autocast(embedder):
        for batch_ids, tensors in tqdm(_fed(embedder, inputs, batches), total=len(batches), desc=desc, unit="batch",
                                       mininterval=5):
            batch = {name: tensor.to(embedder.device, non_blocking=True) for name, tensor in tensors.items()}
            hidden = embedder.model(**batch).last_hidden_state
            pooled = pool(hidden, batch["attention_mask"], embedder.pooling).float()
            vectors = torch.nn.functional.normalize(pooled, dim=-1)
            out[row : row + len(batch_ids)] = vectors.cpu().numpy()
            row += len(batch_ids)
    return out


def with_instruction(queries: list[str], instruction: str) -> list[str]:
    """FlagEmbedding's default `query_instruction_format` "{}{}": instruction, then the query."""
    return [f"{instruction}{q}" for q in queries]
