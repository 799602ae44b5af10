#!/usr/bin/env bash
# Runs CORL's algorithms/offline/dt.py, unchanged, on this project's D4RL-layout file (a peer check; see
# docs/recipes.md). CORL is not part of this project: put its dt.py (commit 6afec90, github.com/tinkoff-ai/CORL)
# at $CORL_DT, and install pyrallis into $PEER_SITE (pip install --target "$PEER_SITE" pyrallis).
# The shims beside this script give it an old-gym API over gymnasium Hopper-v4 serving $PEER_DATASET as
# get_dataset(), an empty d4rl, and a wandb that logs to $PEER_LOG (JSON lines).
#   usage: CORL_DT=/path/dt.py scripts/peer/run_corl.sh LOGNAME --update_steps 5000 --eval_every 2500 --eval_episodes 20
#   or, for CORL's any_percent_bc.py (same commit):
#          CORL_BC=/path/any_percent_bc.py scripts/peer/run_corl.sh LOGNAME --frac 0.1 --max_timesteps 200000 --seed 0
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
name=$1; shift
export PEER_DATASET=${PEER_DATASET:-$HOME/.cache/dt-playground/datasets/hopper_medium-v2.hdf5}
export PEER_LOG=${PEER_LOG_DIR:-runs}/$name.jsonl
export PYTHONPATH=$here/shims:${PEER_SITE:-/tmp/peer/site}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
if [ -n "${CORL_BC:-}" ]; then  # any_percent_bc.py (10% BC: --frac 0.1) instead of dt.py
  exec "$here/../../.venv/bin/python" "$CORL_BC" --device cpu --env hopper-medium-v2 "$@"
fi
exec "$here/../../.venv/bin/python" "${CORL_DT:?set CORL_DT to the path of the peer dt.py}" --device cpu --num_workers 0 \
  --env_name hopper-medium-v2 --target_returns "[3600.0,1800.0]" "$@"
