"""Training speed and memory of a BERT-base-sized embedder, with and without gradient checkpointing.

    python benchmarks/gpu_train.py                  # on a machine with a CUDA GPU; about a minute
    python benchmarks/gpu_train.py --device cpu --layers 2 --hidden 64 --tokens 64 --steps 2   # plumbing only

One step is what `finetune` runs on one GPU with the MLDR preset: FlagEmbedding's
BiEncoderOnlyEmbedderModel (CLS pooling, normalised, temperature 0.02, in-batch negatives) on
8 queries of 64 tokens and 8 x 8 passages (1 positive + 7 negatives) of 512 tokens, fp32 weights
under bf16 autocast as the Trainer's `bf16=True` runs them, AdamW. Gradient checkpointing is the
non-reentrant variant that `finetune.gradient_checkpointing: true` turns on. Prints steps/s,
passages/s, model TFLOP/s (3x the forward FLOPs; checkpointing's recomputation is not counted,
so its figure shows the useful rate) and peak GPU memory for each setting.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_encode import build_model, flops_per_text  # noqa: E402

QUERY_TOKENS = 64


def make_batch(vocab_size: int, queries: int, group: int, tokens: int, device: torch.device) -> tuple[dict, dict]:
    generator = torch.Generator().manual_seed(0)

    def features(count: int, length: int) -> dict:
        ids = torch.randint(1000, vocab_size, (count, length), generator=generator)
        return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}

    return features(queries, QUERY_TOKENS), features(queries * group, tokens)


def measure(model_dir: Path, device: torch.device, checkpointing: bool, args: argparse.Namespace) -> dict:
    from FlagEmbedding.finetune.embedder.encoder_only.base import BiEncoderOnlyEmbedderModel
    from transformers import AutoModel

    torch.manual_seed(0)
    encoder = AutoModel.from_pretrained(model_dir).to(device)
    model = BiEncoderOnlyEmbedderModel(encoder, temperature=0.02, sentence_pooling_method="cls",
                                       normalize_embeddings=True)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.type == "cuda")
    queries, passages = make_batch(encoder.config.vocab_size, args.batch, args.group, args.tokens, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)

    def step() -> None:
        with autocast:
            loss = model(queries=queries, passages=passages).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    synchronize()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    synchronize()
    seconds = (time.perf_counter() - started) / args.steps
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    step_flops = 3 * (args.batch * args.group * flops_per_text(args.layers, args.hidden, args.tokens)
                      + args.batch * flops_per_text(args.layers, args.hidden, QUERY_TOKENS))
    return {"checkpointing": checkpointing, "steps_per_s": 1 / seconds,
            "passages_per_s": args.batch * args.group / seconds, "tflops": step_flops / seconds / 1e12,
            "peak_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8, help="queries per step")
    parser.add_argument("--group", type=int, default=8, help="passages per query: 1 positive + negatives")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_train.py needs a CUDA GPU (or --device cpu with a small --layers/--hidden for a plumbing check)")
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"{name}, torch {torch.__version__}: {args.layers} layers x {args.hidden}, batch {args.batch} x group "
          f"{args.group} x {args.tokens} tokens (queries {QUERY_TOKENS}), bf16 autocast, AdamW")
    print(f"{'checkpointing':<14} {'steps/s':>8} {'passages/s':>11} {'TFLOP/s':>8} {'peak GiB':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(Path(tmp) / "model", args.layers, args.hidden, args.tokens)
        for checkpointing in (False, True):
            row = measure(model_dir, device, checkpointing, args)
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the next setting's peak starts from an empty card
            print(f"{'on' if checkpointing else 'off':<14} {row['steps_per_s']:8.2f} {row['passages_per_s']:11.0f} "
                  f"{row['tflops']:8.1f} {row['peak_gib']:9.1f}", flush=True)


if __name__ == "__main__":
    main()
