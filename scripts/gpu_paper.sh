#!/usr/bin/env bash
# The paper configuration (K=20, embed 128, 3 layers, 1 head, lr 1e-4, 10k warm-up, 100k steps) on hopper-medium
# and hopper-medium-expert, side by side on one CUDA GPU, in one unattended call of at most 10 minutes (run with the
# device tool, from the repository root):
#   1. generates the two datasets (medium, expert, medium-expert: the same content on any x86-64 CPU; the content
#      hashes are logged beside the ones this project's CPUs give);
#   2. trains both runs at once (`--device cuda --compile reduce-overhead`: CUDA graphs, the step is bound by
#      kernel launches), evaluating 20 episodes at targets 3600 and 1800 every $EVAL_EVERY steps, until 100k steps
#      or the deadline, saving every 2,000 steps; the deadline sends SIGTERM, which saves the current step on a
#      CPU, but on the H200 under CUDA graphs the runs ended at once and kept their last periodic save (not yet
#      understood); a run resumes anywhere with `python -m dt train ... --resume` (on a CPU too: the sampler is
#      reseeded, see dt/train/state.py);
#   3. packs each run (checkpoint, metrics.jsonl, config.json) into $OUT/paper-<dataset>.tar.
#   OUT=out DEADLINE_S=540 bash scripts/gpu_paper.sh      (seconds from the start of the script)
# A small dry run on a CPU:  CARRIED_WHEELS=0 PYTHON=.venv/bin/python DEVICE=cpu COMPILE=off STEPS=20000 DEADLINE_S=120 \
#   MAX_STEPS=40 EVAL_EVERY=20 EPISODES=2 bash scripts/gpu_paper.sh
set -u
cd "$(dirname "$0")/.."
START=$(date +%s)
OUT=${OUT:-$PWD/gpu_paper_out}
WORK=${WORK:-/tmp/dt-gpu-paper}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda} COMPILE=${COMPILE:-reduce-overhead} DEADLINE_S=${DEADLINE_S:-540}
STEPS=${STEPS:-1000000} MAX_STEPS=${MAX_STEPS:-100000} EVAL_EVERY=${EVAL_EVERY:-10000} EPISODES=${EPISODES:-20}
mkdir -p "$OUT" "$WORK/runs"
LOG="$OUT/gpu_paper.log"
if [ "${CARRIED_WHEELS:-1}" = 1 ] && ls .whl/*.whl >/dev/null 2>&1; then  # gymnasium + mujoco wheels carried to a machine without them
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1 MUJOCO_GL=${MUJOCO_GL:-egl}  # MUJOCO_GL=disable where no EGL library is installed (no rendering is needed)
export DT_DATASET_DIR=$WORK/datasets
say() { echo "== [$(($(date +%s) - START)) s] $*" | tee -a "$LOG"; }

: >"$LOG"
say "gpu_paper on $(hostname), repo $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
    lscpu | grep -E '^Model name|^CPU\(s\)'
    "$PY" -c "import torch, transformers, numpy, mujoco, gymnasium; print('torch', torch.__version__, '| transformers',
transformers.__version__, '| numpy', numpy.__version__, '| mujoco', mujoco.__version__, '| gymnasium', gymnasium.__version__)"
} 2>&1 | tee -a "$LOG"

say "generate hopper-medium-expert ($STEPS + $STEPS transitions; makes hopper-medium and hopper-expert first)"
"$PY" -m dt data generate hopper-medium-expert --steps "$STEPS" 2>&1 | grep -v '%|' | tee -a "$LOG"
"$PY" - <<'EOF' 2>&1 | tee -a "$LOG"
from dt.data import load_dataset
for name in ("hopper-medium", "hopper-medium-expert"):
    print(f"{name}: content sha256 {load_dataset(name).content_hash()}")
EOF

left=$((START + DEADLINE_S - $(date +%s) - 20))
say "train the paper configuration on both datasets at once, for at most ${left} s"
pids=()
for ds in hopper-medium hopper-medium-expert; do
    timeout -k 60 -s TERM "$left" "$PY" -m dt train --dataset "$ds" --preset paper --seed 0 --device "$DEVICE" \
        --compile "$COMPILE" --max-steps "$MAX_STEPS" --eval-every "$EVAL_EVERY" --eval-episodes "$EPISODES" \
        --save-every 2000 --log-every 500 --quiet --no-tensorboard --out-dir "$WORK/runs/paper-$ds" \
        >"$OUT/train-$ds.log" 2>&1 &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
for ds in hopper-medium hopper-medium-expert; do
    run="$WORK/runs/paper-$ds"
    tail -3 "$OUT/train-$ds.log" | tee -a "$LOG"
    "$PY" - "$run/metrics.jsonl" "$ds" <<'EOF' 2>&1 | tee -a "$LOG"
import json, sys
recs = [json.loads(x) for x in open(sys.argv[1])]
rates = [r["steps_per_s"] for r in recs if "steps_per_s" in r]
rate = f"{sorted(rates)[len(rates) // 2]:.0f} steps/s (median interval)" if rates else "no rate logged"
print(f"{sys.argv[2]}: reached step {recs[-1]['step']}; {rate}")
for r in recs:
    if "eval" in r:
        print("  step", r["eval"]["step"], " ".join(f"{e['target']:.0f}: {e['normalized_mean']:.1f}" for e in r["eval"]["results"]))
EOF
    tar cf "$OUT/paper-$ds.tar" -C "$run" checkpoint metrics.jsonl config.json
done
say "done"
ls -la "$OUT"
