"""GPU encoding throughput of a BERT-base-sized encoder, as a fraction of the GPU's bf16 peak.

    python benchmarks/gpu_encode.py                    # on a machine with a CUDA GPU; about 2 minutes
    python benchmarks/gpu_encode.py --peak-tflops 989  # another card's dense bf16 peak

A random BERT-base (12 layers, hidden 768, 512 positions) encodes full 512-token texts through
this project's encoder (`encode.encode`, bf16 autocast, length-sorted batches) and through a bare
forward pass of the same model in bf16 weights; one text costs

    layers * tokens * (24 * hidden^2 + 4 * tokens * hidden) = 96.6 GFLOP

(QKV and output projections and the 4x FFN: 24 h^2 per token; attention scores and values:
4 T h per token). Prints a table of texts/s, TFLOP/s and % of peak per batch size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from zh_retrieval.encode import encode, load_embedder  # noqa: E402

LAYERS, HIDDEN, TOKENS = 12, 768, 512


def flops_per_text(layers: int = LAYERS, hidden: int = HIDDEN, tokens: int = TOKENS) -> float:
    return layers * tokens * (24 * hidden**2 + 4 * tokens * hidden)


def build_model(out_dir: Path) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(ROOT / "models" / "tiny-bert-zh")
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                        num_attention_heads=12, intermediate_size=4 * HIDDEN, max_position_embeddings=TOKENS)
    torch.manual_seed(0)
    BertModel(config, add_pooling_layer=False).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def timed(run, repeats: int) -> float:
    """Best-of seconds for one call, after a warm-up call."""
    run()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        torch.cuda.synchronize()
        started = time.perf_counter()
        run()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=4096)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=790.0, help="the card's dense bf16 peak")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_encode.py needs a CUDA GPU")
    torch.backends.cuda.matmul.allow_tf32 = True

    with tempfile.TemporaryDirectory() as tmp:
        embedder = load_embedder(build_model(Path(tmp) / "model"), "cls", "bf16", torch.device("cuda"))
    # One character per token: each text fills all 512 positions once the tokenizer adds CLS and SEP.
    vocab = [t for t in embedder.tokenizer.get_vocab() if len(t) == 1 and "\u4e00" <= t <= "\u9fff"]
    texts = ["".join(vocab[(i * 7 + j) % len(vocab)] for j in range(TOKENS)) for i in range(args.texts)]
    per_text = flops_per_text()
    print(f"{torch.cuda.get_device_name()}: {args.texts} texts x {TOKENS} tokens, {per_text / 1e9:.1f} GFLOP per text, "
          f"peak {args.peak_tflops:.0f} TFLOP/s")
    print(f"{'path':<28} {'batch':>5} {'texts/s':>9} {'TFLOP/s':>8} {'% peak':>7}")

    bare = embedder.model.to(torch.bfloat16)
    ids = torch.randint(1000, 2000, (max(args.batch_sizes), TOKENS), device="cuda")
    for batch_size in args.batch_sizes:
        for path, run, count in (
            ("encode.encode (tokenize+bf16)", lambda: encode(embedder, texts, TOKENS, batch_size), len(texts)),
            ("bare forward (bf16 weights)", lambda: bare(input_ids=ids[:batch_size]), batch_size),
        ):
            with torch.inference_mode():
                seconds = timed(run, args.repeats)
            rate = count / seconds
            tflops = rate * per_text / 1e12
            print(f"{path:<28} {batch_size:>5} {rate:9.0f} {tflops:8.1f} {100 * tflops / args.peak_tflops:6.1f}%")
    print(f"peak_gpu_memory_gib={torch.cuda.max_memory_allocated() / 2**30:.1f}")


if __name__ == "__main__":
    main()
