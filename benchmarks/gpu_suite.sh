#!/usr/bin/env bash
# Every GPU measurement this project reports, in one run (about 5 minutes on an H100/H200):
#
#     bash benchmarks/gpu_suite.sh [LOG_DIR]       # PYTHON=... to pick the interpreter
#
# 1. benchmarks/gpu_encode.py  encoding throughput of a BERT-base at 512 tokens, bf16
# 2. benchmarks/bf16_weights.py  cosine to fp32 of bf16 autocast and of bf16 weights
# 3. benchmarks/gpu_train.py   training steps/s and peak memory, checkpointing off and on
# 4. scripts/gpu_smoke.py      the demo pipeline on CUDA (dvc exp run --temp, encode.precision auto)
# Each one's output goes to LOG_DIR (default gpu-logs/) as well as to the terminal; the exit
# status is non-zero if any of them failed, after all four have run.
set -uo pipefail
cd "$(dirname "$0")/.."
log_dir=${1:-gpu-logs}
python=${PYTHON:-python}
mkdir -p "$log_dir"
status=0
nvidia-smi >"$log_dir/nvidia-smi.txt" 2>&1 || true
for step in benchmarks/gpu_encode.py benchmarks/bf16_weights.py benchmarks/gpu_train.py scripts/gpu_smoke.py; do
    name=$(basename "$step" .py)
    echo "== $step"
    started=$(date +%s)
    "$python" "$step" 2>&1 | tee "$log_dir/$name.txt" || status=1
    echo "== $step: $(( $(date +%s) - started )) s" | tee -a "$log_dir/$name.txt"
done
exit $status
