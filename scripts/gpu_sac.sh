#!/usr/bin/env bash
# The SAC behaviour-policy run of the generated Hopper datasets, on a CUDA machine (run once with the device tool,
# from the repository root): trains for $SAC_SECONDS, evaluates every 10k-step snapshot over 100 stochastic
# episodes in background processes, selects medium/expert, and packs what comes back into $OUT.
#   OUT=out SAC_SECONDS=380 bash scripts/gpu_sac.sh
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT" runs
if ls .whl/*.whl >/dev/null 2>&1; then  # gymnasium + mujoco wheels carried to a machine without them
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
{
  nvidia-smi -L
  lscpu | grep -E '^Model name'
  python3 -c "import torch, numpy, mujoco; print('torch', torch.__version__, 'numpy', numpy.__version__, 'mujoco', mujoco.__version__)"
  # Cross-CPU reproducibility of dataset generation: the golden hash of tests/behaviour/test_generate.py, on this CPU.
  python3 - <<'PY'
import hashlib, sys
import numpy as np
sys.path.insert(0, "tests")
from test_generate import GOLDEN_SHA256, _fixed_actor
from dt.behaviour.generate import collect
a = collect("hopper", _fixed_actor(), num_transitions=2000, seed=0, num_envs=4).arrays
d = hashlib.sha256(b"".join(np.ascontiguousarray(a[k]).tobytes() for k in sorted(a))).hexdigest()
print("golden generation hash:", "SAME" if d == GOLDEN_SHA256 else f"DIFFERENT {d}")
PY
} 2>&1 | tee "$OUT/machine.log"
timeout $((${SAC_SECONDS:-380} + 120)) python3 -m dt.behaviour.sac --device "${SAC_DEVICE:-cuda}" --eval-workers 12 ${SAC_EXTRA:-} \
  --max-seconds "${SAC_SECONDS:-380}" --run-dir runs/sac-gpu 2>&1 | tee "$OUT/sac.log"
python3 -m dt.behaviour.sac select --run-dir runs/sac-gpu --policy-dir runs/policies 2>&1 | tee "$OUT/select.log"
cp runs/sac-gpu/config.json runs/policies/sac-hopper-config.json
tar czf "$OUT/policies.tgz" -C runs policies
tar cf - -C runs/sac-gpu snapshots | split -b 15M - "$OUT/snapshots.tar.part-"
ls -la "$OUT"
