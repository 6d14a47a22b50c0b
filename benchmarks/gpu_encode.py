"""GPU encoding throughput of a BERT-base-sized encoder, as a fraction of the GPU's bf16 peak.

    python benchmarks/gpu_encode.py                    # on a machine with a CUDA GPU; about 2 minutes
    python benchmarks/gpu_encode.py --peak-tflops 989  # another card's dense bf16 peak
    python benchmarks/gpu_encode.py --device cpu --layers 2 --hidden 64 --tokens 64 --texts 16 --repeats 1  # plumbing

A random BERT-base (12 layers, hidden 768, 512 positions) encodes full 512-token texts through
`embed`'s path (`encode.encode_ids`: the cut's token ids padded in NumPy by a worker thread,
pinned, copied without blocking, bf16 weights on a GPU), through the text path (`encode.encode`:
the tokenizer in the loop), then parts alone: the tokenizer, the forward pass on ready ids under
bf16 autocast over fp32 weights (the GPU path before), and in bf16 weights; one text costs

    layers * tokens * (24 * hidden^2 + 4 * tokens * hidden) = 96.6 GFLOP

(QKV and output projections and the 4x FFN: 24 h^2 per token; attention scores and values:
4 T h per token). Prints texts/s, TFLOP/s, % of the data-sheet peak and % of what one large
bf16 matrix product reaches on the card, per batch size.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from zh_retrieval.retrieval.encode import encode, encode_ids, load_embedder  # noqa: E402

LAYERS, HIDDEN, TOKENS = 12, 768, 512


def flops_per_text(layers: int = LAYERS, hidden: int = HIDDEN, tokens: int = TOKENS) -> float:
    return layers * tokens * (24 * hidden**2 + 4 * tokens * hidden)


def build_model(out_dir: Path, layers: int = LAYERS, hidden: int = HIDDEN, tokens: int = TOKENS) -> Path:
    """A random BERT of the given size, saved with the tiny model's tokenizer (speed does not need trained weights)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(ROOT / "models" / "tiny-bert-zh")
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=max(1, hidden // 64), intermediate_size=4 * hidden,
                        max_position_embeddings=tokens)
    torch.manual_seed(0)
    BertModel(config, add_pooling_layer=False).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measured_peak_tflops(device: torch.device, size: int = 8192, repeats: int = 10) -> float:
    """What this card reaches on one large bf16 matrix product: the practical ceiling to compare with."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e12


def timed(run, repeats: int, device: torch.device) -> float:
    """Best-of seconds for one call, after a warm-up call."""
    run()
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        run()
        synchronize(device)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=4096)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="the card's dense bf16 peak from its data sheet (H100/H200 SXM: 989)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--layers", type=int, default=LAYERS)
    parser.add_argument("--hidden", type=int, default=HIDDEN)
    parser.add_argument("--tokens", type=int, default=TOKENS)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_encode.py needs a CUDA GPU (or --device cpu with a small model for a plumbing check)")
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    tokens = args.tokens

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(Path(tmp) / "model", args.layers, args.hidden, tokens)
        embedder = load_embedder(model_dir, "cls", "bf16", device)  # what embed loads: bf16 weights on a GPU
        autocast = load_embedder(model_dir, "cls", "bf16", device, bf16_weights=False)
    # One character per token: each text fills every position once the tokenizer adds CLS and SEP.
    vocab = [t for t in embedder.tokenizer.get_vocab() if len(t) == 1 and "\u4e00" <= t <= "\u9fff"]
    texts = ["".join(vocab[(i * 7 + j) % len(vocab)] for j in range(tokens)) for i in range(args.texts)]
    per_text = flops_per_text(args.layers, args.hidden, tokens)
    matmul = measured_peak_tflops(device, size=8192 if device.type == "cuda" else 512)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"{name}, torch {torch.__version__}: {args.texts} texts x {tokens} tokens, "
          f"{per_text / 1e9:.1f} GFLOP per text; bf16 peak {args.peak_tflops:.0f} TFLOP/s (data sheet), "
          f"{matmul:.0f} TFLOP/s measured on an 8192^3 matrix product")
    print(f"{'path':<30} {'batch':>5} {'texts/s':>9} {'TFLOP/s':>8} {'% peak':>7} {'% matmul':>8}")

    bare = copy.deepcopy(autocast.model).to(torch.bfloat16)  # bf16 weights on a CPU too, for the plumbing check
    ids = torch.randint(1000, 2000, (max(args.batch_sizes), tokens), device=device)
    sequences = [row for row in embedder.tokenizer(texts, truncation=True, max_length=tokens, return_tensors="np",
                                                   return_attention_mask=False)["input_ids"].astype(np.uint16)]

    def tokenize_only(batch_size: int) -> None:
        for start in range(0, len(texts), batch_size):
            embedder.tokenizer(texts[start : start + batch_size], padding=True, truncation=True, max_length=tokens,
                               return_tensors="pt")

    def autocast_forward(batch_size: int) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            autocast.model(input_ids=ids[:batch_size])

    embed_path = f"embed: ids, {'bf16 weights' if embedder.bf16_weights else 'autocast'}"
    for batch_size in args.batch_sizes:
        # embed's path, the text path, then parts: the tokenizer alone (CPU), the forward pass on
        # ready ids under autocast over fp32 weights, and in bf16 weights.
        for path, run, count in (
            (embed_path, lambda: encode_ids(embedder, sequences, [tokens] * len(sequences), batch_size), len(texts)),
            ("encode.encode (tokenizer)", lambda: encode(embedder, texts, tokens, batch_size), len(texts)),
            ("tokenizer alone (CPU)", lambda: tokenize_only(batch_size), len(texts)),
            ("forward, bf16 autocast", lambda: autocast_forward(batch_size), batch_size),
            ("forward, bf16 weights", lambda: bare(input_ids=ids[:batch_size]), batch_size),
        ):
            with torch.inference_mode():
                seconds = timed(run, args.repeats, device)
            rate = count / seconds
            tflops = rate * per_text / 1e12
            print(f"{path:<30} {batch_size:>5} {rate:9.0f} {tflops:8.1f} {100 * tflops / args.peak_tflops:6.1f}% "
                  f"{100 * tflops / matmul:7.1f}%", flush=True)
    if device.type == "cuda":
        print(f"peak_gpu_memory_gib={torch.cuda.max_memory_allocated() / 2**30:.1f}")


if __name__ == "__main__":
    main()
