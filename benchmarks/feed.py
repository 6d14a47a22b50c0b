"""How fast the encode loop's feed delivers 512-token passages, the model replaced by a no-op.

    python benchmarks/feed.py                 # the sample's passages, the bundled model's tokenizer
    python benchmarks/feed.py --repeats 5

On a GPU the feed, not the forward pass, bounds encoding (docs/speed-and-memory.md: the tokenizer
manages 1,700-1,900 texts/s on 16 cores, an H200's bf16 forward pass takes ~3,500 texts/s of
bge-base). Three feeds, each from the same passages (the sample cut as embed cuts it, only
passages of the full 512 tokens kept) to model-ready tensors, in the same length-sorted batches:

- `tokenizer padding`: the tokenizer pads and returns arrays (the feed before this change);
- `tokenizer + NumPy padding`: the tokenizer without padding, then `encode.pad_batch` (today's feed);
- `token ids + NumPy padding`: ids already in memory (uint16 arrays), `pad_batch` alone: the feed once passages
  are cut and tokenized once for every model (the cut-once stage of the GPU path).

Prints passages/s for each (median of --repeats) and the threads torch and the tokenizer use.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from zh_retrieval.data.mldr import load_corpus  # noqa: E402
from zh_retrieval.data.passages import split_many  # noqa: E402
from zh_retrieval.retrieval.encode import length_sorted_batches, pad_batch  # noqa: E402

MODEL = ROOT / "models" / "zh-mini-embedder"
SAMPLE = ROOT / "data" / "sample"
TOKENS = 512


def full_passages(tokenizer, minimum: int) -> list[str]:
    """The sample's passages of exactly TOKENS tokens (specials included), repeated up to `minimum`."""
    documents = list(load_corpus(SAMPLE).values())
    passages = [p for doc in split_many(tokenizer, documents, TOKENS, 64) for p in doc]
    full = [p for p in passages if len(tokenizer(p, truncation=True, max_length=TOKENS)["input_ids"]) == TOKENS]
    return (full * (minimum // max(len(full), 1) + 1))[:minimum]


def timed(feed: Callable[[], int], repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        count = feed()
        rates.append(count / (time.perf_counter() - started))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    texts = full_passages(tokenizer, args.passages)
    batches = length_sorted_batches(texts, args.batch_size)
    # As the cut-once stage would hold them: one small uint16 array a passage (the vocabulary fits).
    tokenized = tokenizer(texts, truncation=True, max_length=TOKENS, return_attention_mask=False,
                          return_token_type_ids=False)["input_ids"]
    ids = [np.asarray(sequence, dtype=np.uint16) for sequence in tokenized]

    def tokenizer_padding() -> int:
        for batch in batches:
            arrays = tokenizer([texts[i] for i in batch], padding=True, truncation=True, max_length=TOKENS,
                               return_tensors="np")
            {name: torch.from_numpy(array) for name, array in arrays.items()}
        return len(texts)

    def tokenizer_then_numpy() -> int:
        for batch in batches:
            sequences = tokenizer([texts[i] for i in batch], truncation=True, max_length=TOKENS,
                                  return_attention_mask=False, return_token_type_ids=False)["input_ids"]
            {name: torch.from_numpy(array) for name, array in pad_batch(sequences, tokenizer).items()}
        return len(texts)

    def ids_then_numpy() -> int:
        for batch in batches:
            {name: torch.from_numpy(array) for name, array in pad_batch([ids[i] for i in batch], tokenizer).items()}
        return len(texts)

    print(f"{len(texts):,} passages of {TOKENS} tokens, batches of {args.batch_size}; torch threads "
          f"{torch.get_num_threads()}, cores {os.cpu_count()}, TOKENIZERS_PARALLELISM "
          f"{os.environ.get('TOKENIZERS_PARALLELISM', 'unset (on)')}")
    for name, feed in (("tokenizer padding", tokenizer_padding), ("tokenizer + NumPy padding", tokenizer_then_numpy),
                       ("token ids + NumPy padding", ids_then_numpy)):
        print(f"{name}: {timed(feed, args.repeats):,.0f} passages/s")


if __name__ == "__main__":
    main()
