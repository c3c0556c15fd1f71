#!/usr/bin/env bash
# The user's case on a GPU, in one short run (issue 8): default against deterministic on the
# Keras-torch, Keras-JAX and plain PyTorch paths, the answer's experiment x5 in default mode,
# and the cost of determinism and of the whole-state trace. Every check fingerprints the whole
# training state per step (weights, BatchNorm statistics, optimizer slots, RNG state).
#
# Run from the repository root on a GPU machine (the device tool: PyTorch and JAX with CUDA,
# no TensorFlow, no network). Carry what it lacks:
#   - wheels of keras, namex and optree in .whl/ (see the device README),
#   - the four Fashion-MNIST files in .data/fashion-mnist/ (an ignored folder).
# Usage: bash bench/gpu_check.sh [OUTDIR]    (about 6 minutes on an H100 or H200)
set -u
OUT="${1:-${OUT:-bench/results}}"
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}"
export TWINRUN_DATA_DIR="${TWINRUN_DATA_DIR:-$PWD/.data/fashion-mnist}"
export TWINRUN_STORE="$OUT/store"
export PYTHONUNBUFFERED=1
# Several JAX replicas share one GPU: without this each would take 75 % of its memory.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, jax, keras; print('torch', torch.__version__, 'jax', jax.__version__, 'keras', keras.__version__, jax.devices())"

summary() {  # summary NAME EXIT START END
    python3 - "$OUT/$1.json" "$2" "$3" "$4" <<'PY'
import json, sys
path, code, start, end = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
try:
    verdict = json.load(open(path))
except ValueError:
    print(f"  exit {code}: no verdict; {open(path[:-5] + '.err').read()[-600:]}")
    sys.exit()
first = verdict["first_divergence"]
print(f"  exit {code}: {verdict['verdict']}"
      + (f" at step {first['step']} ({', '.join(first['records'])}; first: "
         f"{', '.join((first.get('variables') or [])[:3])})" if first else "")
      + f"; {verdict['steps_compared']} steps compared; {end - start:.0f} s")
layer = (first or {}).get("layer")
if layer:
    print(f"    localised to {layer.get('name')} ({layer.get('class')})")
rows = []
for r in verdict["replicas"]:
    m = r["metrics"]
    rows.append(m)
    shown = {k: m[k] for k in ("loss", "acc", "val_loss", "val_acc", "test_accuracy",
                               "ms_per_step") if k in m}
    print(f"    {r['label']}: {shown} fingerprint {str(r['fingerprint'])[:16]}")
for key in ("loss", "acc", "val_loss", "val_acc"):
    values = [m[key] for m in rows if key in m]
    if len(values) > 1:
        ref = max(abs(v) for v in values) or 1.0
        print(f"    max relative difference of {key}: {100 * (max(values) - min(values)) / ref:.4f} %")
growth = verdict.get("loss_growth") or []
if growth:
    print(f"    largest |batch loss difference| {max(g['max_abs_loss_diff'] for g in growth):.3g}")
PY
}

check() {  # check NAME ARGS...
    local name=$1; shift
    echo "== $name"
    local start end code
    start=$(date +%s.%N)
    timeout 150 python3 -m twinrun check --json --timeout 120 "$@" \
        > "$OUT/$name.json" 2> "$OUT/$name.err"
    code=$?
    end=$(date +%s.%N)
    summary "$name" "$code" "$start" "$end"
}

for backend in torch jax; do
    check "answer-$backend-on" -n 2 --parallel 2 --workload answer-demo --backend "$backend" \
        --determinism on --no-localize
    check "answer-$backend-off-x5" -n 5 --parallel 5 --workload answer-demo --backend "$backend" \
        --determinism off --no-localize
    check "fashion-$backend-on" -n 2 --parallel 2 --workload fashion-cnn --preset quick \
        --backend "$backend" --determinism on --no-localize
    check "fashion-$backend-off" -n 2 --parallel 2 --workload fashion-cnn --preset quick \
        --backend "$backend" --determinism off
done
for mode in on off; do
    check "native-torch-$mode" -n 2 --parallel 2 --backend torch --determinism "$mode" \
        -- python bench/gpu_native_torch.py --steps 600
done
echo "== native torch without a trace (the trace's overhead: compare ms/step with the above)"
python3 bench/gpu_native_torch.py --steps 600 2>&1 | tail -2
