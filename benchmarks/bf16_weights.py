"""How close bf16 encodings come to fp32's: bf16 autocast over fp32 weights, and the weights themselves in bf16.

    python benchmarks/bf16_weights.py                      # the demo's base model and a random BERT-base, on
                                                           # the GPU if there is one (gpu_suite.sh runs this)
    python benchmarks/bf16_weights.py --device cpu
    python benchmarks/bf16_weights.py --model output/finetuned --texts 512

Each model encodes the sample's passages (the cut's token ids, as `embed` feeds them, 512 tokens
and shorter) three times through `encode.encode_batches`: fp32, bf16 autocast (what `encode.precision:
bf16` ran before), and bf16 weights with no autocast (`load_embedder(..., bf16_weights=True)`, what
it runs on a GPU now). Prints the cosine of each bf16 vector to its fp32 vector: the minimum, the
1st percentile and the mean. The bound the pipeline holds bf16 weights to is a minimum of 0.9999
(`encode.BF16_WEIGHTS_MIN_COSINE`); tests/test_encode.py checks it on the demo's model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from zh_retrieval.data.cut import cut_documents  # noqa: E402
from zh_retrieval.data.mldr import iter_corpus  # noqa: E402
from zh_retrieval.retrieval.encode import (  # noqa: E402
    BF16_WEIGHTS_MIN_COSINE,
    batches_by_length,
    encode_batches,
    id_inputs,
    load_embedder,
)

DEMO = ROOT / "models" / "zh-mini-embedder"
SAMPLE = ROOT / "data" / "sample"


def random_base_model(out_dir: Path) -> Path:
    """A random BERT-base (12 x 768) with the demo model's vocabulary: the size of bge-base-zh, untrained."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(DEMO)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), max_position_embeddings=512),
              add_pooling_layer=False).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def cosines(model_dir: Path, device: torch.device, texts: int, batch_size: int) -> dict[str, np.ndarray]:
    """Per passage, the cosine of its bf16-autocast and its bf16-weights vector to its fp32 vector."""
    fp32 = load_embedder(model_dir, "mean", "fp32", device)
    cut = cut_documents(fp32.tokenizer, list(iter_corpus(SAMPLE)), 512, 64)
    sequences = [cut.sequence(i) for i in range(min(texts, cut.info["passages"]))]
    batches = batches_by_length([len(s) for s in sequences], batch_size)
    vectors = {"fp32": encode_batches(fp32, id_inputs(fp32, sequences), batches)}
    for path, bf16_weights in (("bf16 autocast", False), ("bf16 weights", True)):
        embedder = load_embedder(model_dir, "mean", "bf16", device, bf16_weights=bf16_weights)
        vectors[path] = encode_batches(embedder, id_inputs(embedder, sequences), batches)
    return {name: np.sum(v * vectors["fp32"], axis=1) for name, v in vectors.items() if name != "fp32"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, action="append", help="a model directory (default: the demo's "
                        "base model and a random BERT-base)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--texts", type=int, default=1024, help="passages encoded per model")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"{name}, torch {torch.__version__}; bound: minimum cosine {BF16_WEIGHTS_MIN_COSINE}")
    print(f"{'model':<28} {'path':<14} {'min':>8} {'p1':>8} {'mean':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        models = args.model or [DEMO, random_base_model(Path(tmp) / "random-bert-base")]
        for model_dir in models:
            label = "random BERT-base" if model_dir.name == "random-bert-base" else model_dir.name
            for path, values in cosines(model_dir, device, args.texts, args.batch_size).items():
                print(f"{label:<28} {path:<14} {values.min():8.6f} {np.percentile(values, 1):8.6f} "
                      f"{values.mean():9.7f}", flush=True)


if __name__ == "__main__":
    main()
