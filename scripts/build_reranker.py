"""Build the demo's cross-encoder: the bundled embedder's encoder under a fresh one-logit scoring head.

    python scripts/build_reranker.py models/zh-mini-embedder models/zh-mini-reranker

A cross-encoder reads `[CLS] query [SEP] passage [SEP]` and scores the pair with one logit, from
BERT's pooler over [CLS] (`BertForSequenceClassification`, `num_labels=1`), the layout of
bge-reranker-base and bge-reranker-v2-m3, so every stage loads it through the code that loads
those. The encoder's weights are the embedder's; the pooler and the head are new (the embedder
was trained with mean pooling and has neither), drawn with `--seed`. So the demo's *base*
reranker is untrained: its scores order candidates at random, and what `finetune_reranker`
teaches it is the whole of what it knows about the domain. A real run starts from a trained one.

Same input, seed and torch version give the same bytes.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def build(embedder_dir: Path, out_dir: Path, seed: int) -> None:
    config = AutoConfig.from_pretrained(embedder_dir, num_labels=1, trust_remote_code=False)
    if getattr(config, "type_vocab_size", 0) < 2:  # the passage is segment 1, as FlagEmbedding's collator sends it
        raise SystemExit(f"{embedder_dir}: type_vocab_size {config.type_vocab_size}; a cross-encoder needs 2")
    torch.manual_seed(seed)
    model = BertForSequenceClassification.from_pretrained(embedder_dir, config=config, trust_remote_code=False)
    model.config.architectures = ["BertForSequenceClassification"]
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    AutoTokenizer.from_pretrained(embedder_dir, trust_remote_code=False)  # it loads: the copies below will too
    for name in TOKENIZER_FILES:
        if (embedder_dir / name).is_file():
            shutil.copyfile(embedder_dir / name, out_dir / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("embedder_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build(args.embedder_dir, args.out_dir, args.seed)


if __name__ == "__main__":
    main()
