"""Build the bundled demo base model: a tiny, randomly initialised BERT with a character vocabulary.

    python scripts/build_tiny_model.py data/sample models/tiny-bert-zh

The weights are random (seeded), so the model knows nothing about Chinese: its metrics show
that the pipeline works, not what a real embedder scores. It is saved with `save_pretrained`
(safetensors + a BERT tokenizer), the same layout as `BAAI/bge-base-zh-v1.5`, so every stage
loads it through the code path the real model takes.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

import torch
from transformers import BertConfig, BertModel, BertTokenizerFast
from transformers.models.bert.tokenization_bert import BasicTokenizer

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def dataset_texts(dataset_dir: Path) -> list[str]:
    texts = []
    for path in sorted(dataset_dir.glob("*.jsonl")):
        with path.open(encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                texts.append(row.get("text") or row.get("query") or "")
    return texts


def character_vocabulary(texts: list[str]) -> list[str]:
    """Every character BERT's basic tokenizer can hand to WordPiece, as a word start and a `##` piece.

    WordPiece then spells any word of the sample character by character, so no input becomes
    [UNK]: the model sees all of the text, as bge's own vocabulary lets it.
    """
    basic = BasicTokenizer(do_lower_case=True)
    chars: set[str] = set()
    for text in texts:
        for word in basic.tokenize(text):
            chars.update(word)
    chars.update(chr(c) for c in range(33, 127) if not chr(c).isupper())
    ordered = sorted(chars)
    return SPECIAL_TOKENS + ordered + [f"##{c}" for c in ordered]


def build_tiny_model(dataset_dir: Path, out_dir: Path, seed: int) -> BertConfig:
    vocab = character_vocabulary(dataset_texts(dataset_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = Path(tmp) / "vocab.txt"
        vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
        tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True, tokenize_chinese_chars=True)
    tokenizer.model_max_length = 512
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=512,
        max_position_embeddings=512,
        # Dropout 0: with attention dropout on, PyTorch leaves its fast attention kernel and a
        # CPU fine-tune takes ~3x longer for the same result.
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    model = BertModel(config, add_pooling_layer=False)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return config


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset_dir", type=Path,
                        help="an MLDR-layout directory whose characters the vocabulary covers")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = build_tiny_model(args.dataset_dir, args.out_dir, args.seed)
    logger.info(
        "wrote %s: vocabulary %d, %d layers, hidden %d", args.out_dir, config.vocab_size, config.num_hidden_layers,
        config.hidden_size,
    )


if __name__ == "__main__":
    main()
