"""Study script for docs/recipes.md: the peer's 10% selection as a data file of its own.

CORL's any_percent_bc.py keeps the best FRAC of *trajectories* ranked by their *discounted* return (gamma 0.99);
the paper's %BC (`--pct-traj`) keeps the best fraction of *timesteps* ranked by undiscounted return. This writes
the episodes the peer's rule keeps (`dt.data.windows.top_fraction_of_trajectories`, the rule `--pct-rule
trajectories` trains on) from SOURCE into OUT, a D4RL-layout file that `python -m dt train --dataset OUT` reads like
any other (with the source's qpos/qvel and metadata).
usage: PYTHONPATH=. python scripts/study/peer_selection.py SOURCE.hdf5 OUT.hdf5 [FRAC] [GAMMA]
"""

import sys

from dt.data.io import dataset_to_arrays, read_d4rl, write_d4rl
from dt.data.windows import top_fraction_of_trajectories

src, out = sys.argv[1], sys.argv[2]
frac = float(sys.argv[3]) if len(sys.argv) > 3 else 0.1
gamma = float(sys.argv[4]) if len(sys.argv) > 4 else 0.99
ds = read_d4rl(src)
keep = top_fraction_of_trajectories(ds, frac, gamma)
idx = ds.transitions_of(keep)
# The source's description, not its content hash or sizes (those belong to the whole file).
described = ("algorithm", "env_id", "generator", "generator_version", "policy", "seed")
meta = {k: v for k, v in ds.metadata.items() if k in described}
write_d4rl(out, {k: v[idx] for k, v in dataset_to_arrays(ds).items()}, meta)
print(f"{out}: {len(keep)} of {ds.num_episodes} episodes, {len(idx)} transitions")
