"""Load a BERT-style embedder and turn texts into unit vectors, the way FlagEmbedding trains them.

The same code loads `BAAI/bge-base-zh-v1.5`, a fine-tuned output directory and the bundled tiny
model. Pooling and the query instruction are passed in (from params.yaml), so evaluation embeds
exactly as training did: `instruction + query` for queries, the bare text for passages.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
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


def load_embedder(model_dir: Path, pooling: str, precision: str = "fp32", device: torch.device | None = None
                  ) -> Embedder:
    check_model_dir(model_dir)
    device = device or torch.device(visible_devices()[0])
    precision = resolve_precision(precision, device)
    if precision == "fp16" and device.type != "cuda":
        raise InputError(model_dir, "fp16 needs a GPU", fix="use precision fp32 or bf16 on a CPU")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
        model = AutoModel.from_pretrained(model_dir, use_safetensors=True, trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise InputError(model_dir, f"cannot load the model: {error}") from None
    model.eval().to(device)
    return Embedder(model=model, tokenizer=tokenizer, pooling=pooling, device=device, precision=precision)


def pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor, method: str) -> torch.Tensor:
    """Sentence vector from token vectors, as FlagEmbedding's `_sentence_embedding` computes it."""
    if method == "cls":
        return last_hidden_state[:, 0]
    if method == "mean":
        mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)
        return (last_hidden_state * mask).sum(dim=1) / mask.sum(dim=1)
    raise ValueError(f"unknown pooling method {method!r}")


def _autocast(embedder: Embedder) -> contextlib.AbstractContextManager:
    if embedder.precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if embedder.precision == "bf16" else torch.float16
    return torch.autocast(device_type=embedder.device.type, dtype=dtype)


def length_sorted_batches(texts: list[str], batch_size: int) -> list[list[int]]:
    """Indices of texts in batches, longest texts first, so each batch is padded to similar lengths.

    Ties keep input order (a stable sort), so the batches, and the vectors, are the same every run.
    """
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def _tokenized(embedder: Embedder, texts: list[str], batches: list[list[int]], max_length: int
               ) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """Each batch's ids with its tokenized tensors; batch i+1 is tokenized while the model runs batch i.

    On a GPU the tokenizer, not the model, is the bottleneck (benchmarks/gpu_encode.py,
    docs/speed-and-memory.md). Asking for NumPy arrays and wrapping them without a copy skips
    transformers' slow list-to-tensor conversion (the token ids are the same); the worker thread
    overlaps tokenizing with the forward pass.
    """

    def tokenize(ids: list[int]) -> dict[str, torch.Tensor]:
        arrays = embedder.tokenizer([texts[i] for i in ids], padding=True, truncation=True, max_length=max_length,
                                    return_tensors="np")
        return {name: torch.from_numpy(array) for name, array in arrays.items()}

    with ThreadPoolExecutor(max_workers=1) as worker:
        upcoming = worker.submit(tokenize, batches[0]) if batches else None
        for index, ids in enumerate(batches):
            batch = upcoming.result()
            if index + 1 < len(batches):
                upcoming = worker.submit(tokenize, batches[index + 1])
            yield ids, batch


def encode(
    embedder: Embedder, texts: list[str], max_length: int, batch_size: int = 32, desc: str = "encode"
) -> np.ndarray:
    """L2-normalised float32 vectors, one row per text, in the order given.

    Texts go through the model longest first, padded per batch, so a batch of short texts is
    not padded to the longest text of the corpus; the rows are put back in input order.
    """
    batches = length_sorted_batches(texts, batch_size)
    out = np.zeros((len(texts), embedder.model.config.hidden_size), dtype=np.float32)
    out[[i for batch in batches for i in batch]] = encode_batches(embedder, texts, batches, max_length, desc)
    return out


def encode_batches(embedder: Embedder, texts: list[str], batches: list[list[int]], max_length: int,
                   desc: str = "encode") -> np.ndarray:
    """The vectors of `batches` (indices into texts), one row per index, in the batches' order."""
    rows = sum(len(batch) for batch in batches)
    out = np.zeros((rows, embedder.model.config.hidden_size), dtype=np.float32)
    row = 0
    with torch.inference_mode(), _autocast(embedder):
        for batch_ids, tokens in tqdm(_tokenized(embedder, texts, batches, max_length), total=len(batches),
                                      desc=desc, unit="batch", mininterval=5):
            batch = {name: tensor.to(embedder.device) for name, tensor in tokens.items()}
            hidden = embedder.model(**batch).last_hidden_state
            pooled = pool(hidden, batch["attention_mask"], embedder.pooling).float()
            vectors = torch.nn.functional.normalize(pooled, dim=-1)
            out[row : row + len(batch_ids)] = vectors.cpu().numpy()
            row += len(batch_ids)
    return out


def with_instruction(queries: list[str], instruction: str) -> list[str]:
    """FlagEmbedding's default `query_instruction_format` "{}{}": instruction, then the query."""
    return [f"{instruction}{q}" for q in queries]
