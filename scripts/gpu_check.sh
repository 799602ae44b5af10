#!/usr/bin/env bash
# One unattended check of the CUDA paths on a GPU machine (H100/H200 class), in about 4 minutes:
#   1. a 100-episode evaluation at targets 3600 and 1800 of the shipped DT on CUDA;
#   2. a 2,000-step paper-config training run on CUDA (steps/s, extrapolated to 100k steps);
#   3. `python -m dt bench --device cuda` (sampling, training fp32 / bf16 / compiled against the
#      reference design, evaluation, matmul ceilings) with a batch-size sweep B=64..4096.
# Everything goes to $OUT/gpu_check.log (default ./gpu_check_out/); JSON figures beside it.
# Needs torch, transformers, numpy, h5py, safetensors, gymnasium and mujoco; no internet.
# Makes its own small hopper-medium if none is on disk. Each step has its own time limit, and
# a failed step is logged and skipped, so the later steps still run.
#
# Usage, from the repository root:  bash scripts/gpu_check.sh
# A dry run of the same steps on a CPU, small:  PYTHON=.venv/bin/python DEVICE=cpu STEPS=20 EPISODES=2 SIZES="64 128" \
#     BENCH="--quick --eval-episodes 4 --scaling-steps 3" bash scripts/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
PY="${PYTHON:-python3}"
WORK="$(mktemp -d /tmp/dt-gpu-check.XXXXXX)"
export PYTHONUNBUFFERED=1 MUJOCO_GL="${MUJOCO_GL:-egl}" PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
START=$(date +%s)
DEVICE="${DEVICE:-cuda}" STEPS="${STEPS:-2000}" EPISODES="${EPISODES:-100}" SIZES="${SIZES:-64 256 1024 4096}"
BENCH="${BENCH:---compile reduce-overhead --scaling-steps 200}"

say() { echo "== [$(($(date +%s) - START)) s] $*" | tee -a "$LOG"; }
step() {  # step LIMIT_S DESCRIPTION CMD...: run with a time limit, log everything, never abort the script
    local limit=$1 what=$2
    shift 2
    say "$what: $*"
    timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -eq 124 ]; then say "$what: stopped at its ${limit} s limit"; elif [ "$rc" -ne 0 ]; then say "$what: exit status $rc"; fi
    return 0
}

: >"$LOG"
say "gpu_check on $(hostname), repo $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee -a "$LOG"
"$PY" - <<'EOF' 2>&1 | tee -a "$LOG"
import importlib, platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "| gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NONE")
for m in ("transformers", "numpy", "h5py", "safetensors", "gymnasium", "mujoco"):
    try:
        print(f"  {m} {importlib.import_module(m).__version__}")
    except Exception as e:  # the step that needs it will fail and say so
        print(f"  {m} MISSING ({type(e).__name__}: {e})")
EOF

# 1. Evaluation: 100 episodes at each of the paper's two targets, shipped DT, on CUDA (bf16 by default there).
step 50 "evaluate $EPISODES episodes x 2 targets on $DEVICE" \
    "$PY" -m dt evaluate --checkpoint checkpoints/dt25-hopper-medium --targets 3600 1800 --episodes "$EPISODES" \
    --device "$DEVICE" --quiet --json "$OUT/gpu_eval.json"

# 2. Training: a small generated hopper-medium unless one is on disk, then 2,000 paper-config steps.
export DT_DATASET_DIR="${DT_DATASET_DIR:-$WORK/datasets}"
if ! "$PY" -m dt data stats hopper-medium >/dev/null 2>&1; then
    # Small: training speed does not depend on the dataset's size.
    step 45 "generate a 20k-transition hopper-medium" "$PY" -m dt data generate hopper-medium --steps 20000
fi
step 60 "train $STEPS paper-config steps on $DEVICE" \
    "$PY" -m dt train --dataset hopper-medium --device "$DEVICE" --max-steps "$STEPS" --log-every $((STEPS / 4)) \
    --eval-every 0 --eval-episodes 5 --eval-max-steps 100 --save-every "$STEPS" --no-tensorboard --quiet \
    --out-dir "$WORK/run"
[ -f "$WORK/run/metrics.jsonl" ] && "$PY" - "$WORK/run/metrics.jsonl" <<'EOF' 2>&1 | tee -a "$LOG"
import json, sys
recs = [json.loads(x) for x in open(sys.argv[1]) if "steps_per_s" in x]
rate = recs[-1]["steps_per_s"]  # the last interval: warmed up
print(f"training: {rate:.1f} steps/s ({rate * 64:.0f} samples/s) at B=64 after {recs[-1]['step']} steps;"
      f" 100k steps would take {100_000 / rate / 60:.1f} min (plus the evaluations)")
EOF
cp "$WORK/run/metrics.jsonl" "$OUT/gpu_train_metrics.jsonl" 2>/dev/null

# 3. The benchmark against the reference design, with CUDA graphs for the compiled row and a batch sweep.
# shellcheck disable=SC2086  # SIZES and BENCH are word lists
step 170 "bench on $DEVICE" \
    "$PY" -m dt bench --device "$DEVICE" --batch-sizes $SIZES --json "$OUT/gpu_bench.json" $BENCH

say "done in $(($(date +%s) - START)) s; log $LOG"
rm -rf "$WORK"
