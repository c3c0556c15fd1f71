#!/usr/bin/env bash
# twinrun's GPU benchmarks (issue 4, item 7), prepared for whenever a GPU machine is lent:
# determinism overhead (item 1, goal <= 10 % on GPU) and trace overhead (item 2, goal <= 3 %)
# for Keras on jax, Keras on torch and native PyTorch, on the GPU, in under 8 minutes.
# TensorFlow is not needed (the GPU machines carry PyTorch and JAX with CUDA only). Studies
# (item 6) join this script when they exist.
#
# Run from the repository root. Like bench/gpu_check.sh, carry what the machine lacks:
#   - wheels of keras and twinrun's small dependencies in .whl/ (see the device README),
#   - the four Fashion-MNIST files in .data/fashion-mnist/ (an ignored folder).
# Usage: bash bench/gpu_bench.sh [OUTDIR]     (ROUNDS=2 or FRAMEWORKS=jax,native-torch to trim)
#
# Writes bench/results/gpu_step_time.json (the card's name, the environment fingerprint, every
# measurement), copies it to OUTDIR, and regenerates the table in docs/performance.md.
set -u
OUT="${1:-${OUT:-bench/results}}"
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
ROUNDS=${ROUNDS:-3}
FRAMEWORKS=${FRAMEWORKS:-jax,torch,native-torch}
LIMIT_S=${LIMIT_S:-450}   # stop in time, keeping what was measured, inside an 8-minute slot

if ls .whl/*.whl >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}"
export TWINRUN_DATA_DIR="${TWINRUN_DATA_DIR:-$PWD/.data/fashion-mnist}"
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
"$PYTHON" - <<'PY'
import importlib.util
print({n: bool(importlib.util.find_spec(n)) for n in ("torch", "jax", "keras", "tensorflow")})
import torch, jax
print("torch CUDA:", torch.cuda.is_available(), "| jax devices:", jax.devices())
from twinrun.workloads import fashion_mnist
print("Fashion-MNIST:", fashion_mnist.locate())
PY

# Steps take milliseconds on a GPU: the runner's GPU settings time 8 blocks of 40 steps after
# 30 warm-up steps (cuDNN/XLA autotuning) per process; determinism off/on processes alternate
# round by round, and untraced/traced blocks alternate inside each process.
timeout --signal=INT "$LIMIT_S" "$PYTHON" bench/run.py --gpu --frameworks "$FRAMEWORKS" \
    --rounds "$ROUNDS"
code=$?
cp bench/results/gpu_step_time.json "$OUT/" 2>/dev/null
exit $code
