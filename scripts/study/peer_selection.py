"""Study script for docs/recipes.md: the peer's 10% selection as a data file of its own.

CORL's any_percent_bc.py keeps the best FRAC of *trajectories* ranked by their *discounted* return (gamma 0.99);
the paper's %BC (`--pct-traj`) keeps the best fraction of *timesteps* ranked by undiscounted return. This writes
the episodes the peer's rule keeps (split at terminals and timeouts) from SOURCE into OUT, a D4RL-layout file that
`python -m dt train --dataset OUT` reads like any other (with the source's qpos/qvel and metadata).
usage: PYTHONPATH=. python scripts/study/peer_selection.py SOURCE.hdf5 OUT.hdf5 [FRAC] [GAMMA]
"""

import sys

import h5py
import numpy as np

src, out = sys.argv[1], sys.argv[2]
frac = float(sys.argv[3]) if len(sys.argv) > 3 else 0.1
gamma = float(sys.argv[4]) if len(sys.argv) > 4 else 0.99
with h5py.File(src, "r") as f, h5py.File(out, "w") as g:
    r = f["rewards"][()]
    ends = np.flatnonzero(f["terminals"][()].astype(bool) | f["timeouts"][()].astype(bool)) + 1
    starts = np.r_[0, ends[:-1]]
    disc = np.array([(r[s:e] * gamma ** np.arange(e - s)).sum() for s, e in zip(starts, ends)])
    keep = sorted(np.argsort(-disc)[: max(1, int(frac * len(starts)))])
    idx = np.concatenate([np.arange(starts[i], ends[i]) for i in keep])
    for key in ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations"):
        if key in f:
            g.create_dataset(key, data=f[key][()][idx])
    for key in ("qpos", "qvel", "action_log_probs"):
        if f"infos/{key}" in f:
            g.create_dataset(f"infos/{key}", data=f[f"infos/{key}"][()][idx])
    for key in ("algorithm", "env_id", "generator", "generator_version", "policy", "seed"):
        if f"metadata/{key}" in f:
            g.create_dataset(f"metadata/{key}", data=f[f"metadata/{key}"][()])
print(f"{out}: {len(keep)} of {len(starts)} episodes, {len(idx)} transitions")
