#!/usr/bin/env bash
# The user's exact case on a GPU: answer-demo and the quick fashion-cnn under the torch and
# jax backends, with and without determinism, three replicas each; verdicts and step times.
#
# Run from the repository root on a GPU machine (the device tool: PyTorch and JAX with CUDA,
# no TensorFlow, no network). Carry what it lacks:
#   - wheels of keras and twinrun's small dependencies in .whl/ (see the device README),
#   - the four Fashion-MNIST files in .data/fashion-mnist/ (an ignored folder).
# Usage: bash bench/gpu_check.sh [OUTDIR]    (about 6 minutes on an H100)
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
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
for backend in torch jax; do
    for determinism in on off; do
        for workload in answer-demo fashion-cnn; do
            name="$workload-$backend-determinism-$determinism"
            echo "== $name"
            start=$(date +%s.%N)
            python3 -m twinrun check -n 3 --workload "$workload" --preset quick \
                --backend "$backend" --determinism "$determinism" --timeout 300 \
                --json > "$OUT/$name.json" 2> "$OUT/$name.err"
            code=$?
            end=$(date +%s.%N)
            python3 - "$OUT/$name.json" "$code" "$start" "$end" <<'PY'
import json, sys
path, code, start, end = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
try:
    verdict = json.load(open(path))
except ValueError:
    print(f"  exit {code}: no verdict (see {path[:-5]}.err)")
    sys.exit()
first = verdict["first_divergence"]
print(f"  exit {code}: {verdict['verdict']}"
      + (f" at step {first['step']} ({', '.join(first['records'])})" if first else "")
      + f"; {end - start:.0f} s for 3 replicas")
for r in verdict["replicas"]:
    m = r["metrics"]
    print(f"    {r['label']}: loss {m.get('loss')} val_loss {m.get('val_loss')} "
          f"fingerprint {r['fingerprint']}")
growth = verdict.get("loss_growth") or []
if growth:
    print(f"    largest |dloss| {max(g['max_abs_loss_diff'] for g in growth):.3g}")
PY
        done
    done
done
