"""GPU smoke test before a long run: the whole demo pipeline on CUDA, as a temporary experiment.

    .venv/bin/python scripts/gpu_smoke.py

Stops at once (exit 2) when torch sees no CUDA device, saying which torch build is installed.
Otherwise runs `dvc exp run --temp` with bf16 training (fp16 on cards without bf16) and
`encode.precision: auto`, so every stage that can use the GPU does, in a temporary copy that
leaves the workspace alone; then prints the experiment's nDCG@10 and precisions. A few minutes
on any recent card; a failure here would have failed the MLDR run too, hours later.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def dvc(*args: str) -> None:
    # The stage commands call `python`: this interpreter's environment goes first on PATH.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    subprocess.run([sys.executable, "-m", "dvc", *args], cwd=ROOT, env=env, check=True)


def main() -> None:
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        print(f"gpu_smoke: no CUDA device visible to torch {torch.__version__} ({build}). Check `nvidia-smi`, "
              "CUDA_VISIBLE_DEVICES, and that `make setup` installed torch from PyPI on this machine.",
              file=sys.stderr)
        sys.exit(2)
    precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    print(f"gpu_smoke: {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}, torch {torch.__version__} "
          f"(CUDA {torch.version.cuda}); training in {precision}", flush=True)
    name = time.strftime("gpu-smoke-%Y%m%d-%H%M%S")
    started = time.perf_counter()
    dvc("exp", "run", "--temp", "-n", name, "-S", f"finetune.precision={precision}", "-S", "encode.precision=auto")
    print(f"gpu_smoke: the demo ran on CUDA in {time.perf_counter() - started:.0f}s", flush=True)
    dvc("exp", "show", "--md", "--drop", ".*", "--keep",
        r"Experiment$|.*(base|finetuned)\.json:(ndcg_at_10|corpus_precision|query_precision)$")


if __name__ == "__main__":
    main()
