"""Pick the medium and expert snapshots of an SAC run and copy them into ``dt/behaviour/policies/``.

D4RL's recipe: "medium" is the policy early-stopped at about a third of expert return, "expert" a fully trained
one. The run evaluates every snapshot over 100 stochastic episodes (``evals.jsonl``; the stochastic policy is
what collects the datasets), so the choice looks at the whole return distribution, not only its mean:

- medium: the earliest snapshot whose distribution looks like D4RL's hopper-medium (mean return 1,200-1,700, best
  episode >= 2,800, >= 2% of episodes reaching the 1,000-step limit, mean length 385-556, i.e. 1,800-2,600
  episodes per 1M transitions); if none meets all, the snapshot closest to meeting them (least summed shortfall,
  each relative to its bound), and policy.json says what it misses. Re-evaluated over ``--episodes`` episodes
  with other seeds for the shipped policy.json.
- expert: the best snapshot, shipped only if its re-evaluated mean reaches ``--expert-min`` (3,000); otherwise the
  shipped expert (ARS) stays.
- hopper-replay-snapshots: every snapshot before the medium one, in fp16, so that medium-replay can be
  regenerated approximately (rows [s, s + 10k) of the replay buffer were collected by the actor between
  snapshot s and the next one).

    python -m dt.behaviour.sac select --run-dir runs/sac-hopper
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from dt.atomic import atomic_dir
from dt.behaviour.policy import POLICY_DIR, Actor, LinearActor, evaluate_modes, load_snapshot, save_snapshot
from dt.cli.flags import from_args, opt, parser_for
from dt.errors import run_cli

REPLAY_LIMIT_BYTES = 8 * 1024 * 1024


@dataclass
class SelectArgs:
    """Flags of ``python -m dt.behaviour.sac select``: the run, and the criteria of the medium and expert picks."""

    run_dir: str = opt("runs/sac-hopper", "run directory of dt.behaviour.sac")
    policy_dir: str = opt(str(POLICY_DIR), "where the shipped snapshots go")
    episodes: int = opt(100, "episodes of the shipped re-evaluation (>= 20)")
    seed: int = opt(0, "episode i of the re-evaluation resets with seed + i")
    medium_range: tuple[float, float] = opt((1200.0, 1700.0), "mean return")
    medium_max: float = opt(2800.0, "least best-episode return of medium")
    full_frac: float = opt(0.02, "least share of 1000-step episodes")
    mean_len: tuple[float, float] = opt((385.0, 556.0), "mean episode length (1.8k-2.6k per 1M)")
    expert_min: float = opt(3000.0, "return an SAC expert must reach")


_ARGV: list[str] = []  # the select arguments, recorded in the shipped policy.json


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run_dir / "log.jsonl").read_text().splitlines() if ln.strip()]


def snapshot_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "snapshots" / f"step_{step:07d}"


def reevaluate(run_dir: Path, step: int, episodes: int, seed: int) -> dict:
    """Evaluate a run snapshot over ``episodes`` episodes in both modes (seeds apart from the training evals)."""
    out = {**evaluate_modes(load_snapshot(snapshot_dir(run_dir, step)), episodes, seed), "env_steps": step}
    print(
        f"  step {step:>8d}: stochastic {out['stochastic']['mean']:7.1f} +- {out['stochastic']['std']:6.1f}"
        f"  deterministic {out['deterministic']['mean']:7.1f} +- {out['deterministic']['std']:6.1f}",
        flush=True,
    )
    return out


def ship(run_dir: Path, step: int, dest: Path, evaluation: dict, selected_by: str, **extra) -> None:
    """Copy snapshot ``step`` to ``dest`` with its >= 20-episode evaluation in policy.json."""
    src = snapshot_dir(run_dir, step)
    policy = load_snapshot(src)
    meta = dict(policy.meta)
    meta.pop("architecture")
    meta.pop("eval", None)
    meta["eval"] = evaluation
    meta["selected_by"] = selected_by
    meta.update(extra)  # training_eval: the run's own evaluation of this snapshot
    meta["source"] = f"{run_dir.name}/snapshots/{src.name}"
    meta["select_command"] = "python -m dt.behaviour.sac select " + " ".join(_ARGV)
    with atomic_dir(dest) as tmp:
        assert isinstance(policy.actor, (Actor, LinearActor))  # a snapshot, never the random policy
        save_snapshot(tmp, policy.actor, meta)
    print(f"shipped {dest} <- {src}", flush=True)


def ship_replay_snapshots(run_dir: Path, medium_step: int, dest: Path, learning_starts: int, interval: int) -> bool:
    """Write every snapshot before ``medium_step`` into one fp16 safetensors file, if it stays under 8 MB."""
    steps = sorted(
        int(p.name.split("_")[1])
        for p in (run_dir / "snapshots").glob("step_*")
        if int(p.name.split("_")[1]) < medium_step
    )
    tensors: dict[str, torch.Tensor] = {}
    for s in steps:
        for k, v in load_file(str(snapshot_dir(run_dir, s) / "actor.safetensors")).items():
            tensors[f"step_{s:07d}.{k}"] = v.half().contiguous()
    nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
    if nbytes > REPLAY_LIMIT_BYTES:
        print(f"replay snapshots would take {nbytes / 1e6:.1f} MB > 8 MB; kept only in {run_dir}/snapshots")
        return False
    arch = json.loads((snapshot_dir(run_dir, steps[0]) / "policy.json").read_text())["architecture"]
    segments = [
        {
            "snapshot": f"step_{s:07d}",
            "rows": [s, min(s + interval, medium_step)],
            "random_rows": [s, min(max(s, learning_starts), s + interval)] if s < learning_starts else None,
        }
        for s in steps
    ]
    meta = {
        "env_id": "Hopper-v4",
        "algorithm": "SAC",
        "medium_step": medium_step,
        "learning_starts": learning_starts,
        "dtype": "float16 (trained in float32)",
        "architecture": arch,
        "how_to_regenerate": (
            "Roll out the segments in order in one env (episodes continue across segments): uniform random "
            "actions for random_rows, otherwise the stochastic actor of `snapshot` until the segment's rows are "
            "filled. The real buffer was collected by an actor updated every step, so this is approximate; the "
            "exact buffer is in the run dir's buffer/rows_*.npz."
        ),
        "segments": segments,
    }
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    save_file(tensors, str(dest / "actors.safetensors"))
    (dest / "snapshots.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"shipped {len(steps)} replay snapshots ({nbytes / 1e6:.2f} MB) to {dest}")
    return True


def read_evals(run_dir: Path) -> list[dict]:
    """``evals.jsonl``: per snapshot, the returns and lengths of its stochastic evaluation (>= 100 episodes)."""
    path = run_dir / "evals.jsonl"
    if not path.exists():
        raise SystemExit(f"{path}: no snapshot evaluations; run `python -m dt.behaviour.sac` first")
    by_step = {}
    for ln in path.read_text().splitlines():
        if ln.strip():
            e = json.loads(ln)
            by_step[e["env_steps"]] = e
    return [by_step[s] for s in sorted(by_step) if snapshot_dir(run_dir, s).exists()]


def medium_shortfalls(e: dict, args: SelectArgs) -> dict[str, float]:
    """How far one snapshot's stochastic evaluation falls short of each D4RL-medium criterion, relative to the
    criterion's bound (0 where it is met)."""
    lo, hi = args.medium_range
    len_lo, len_hi = args.mean_len
    return {
        f"mean in [{lo:.0f}, {hi:.0f}]": max(0.0, lo - e["mean"], e["mean"] - hi) / lo,
        f"max >= {args.medium_max:.0f}": max(0.0, args.medium_max - e["max"]) / args.medium_max,
        f"{100 * args.full_frac:.0f}%+ reach 1000 steps": max(0.0, args.full_frac - e["full_frac"]) / args.full_frac,
        f"mean length in [{len_lo:.0f}, {len_hi:.0f}]": max(0.0, len_lo - e["mean_len"], e["mean_len"] - len_hi)
        / len_lo,
    }


def main(argv: list[str] | None = None) -> None:
    parser = parser_for(SelectArgs, "python -m dt.behaviour.sac select", __doc__.split("\n")[0])
    argv = sys.argv[1:] if argv is None else argv
    _ARGV[:] = argv
    args = from_args(SelectArgs, parser.parse_args(argv))
    if args.episodes < 20:
        parser.error("--episodes must be >= 20")
    run_dir, policy_dir = Path(args.run_dir), Path(args.policy_dir)
    policy_dir.mkdir(parents=True, exist_ok=True)
    config = json.loads((run_dir / "config.json").read_text())
    evals = read_evals(run_dir)

    # medium: the earliest snapshot meeting every criterion (D4RL early-stopped its medium policy); if none does,
    # the one closest to meeting them (least summed relative shortfall), and the summary says what it misses.
    def distance(e: dict) -> float:
        return sum(medium_shortfalls(e, args).values())

    candidates = [e for e in evals if e["env_steps"] > 0]
    pick = min(candidates, key=lambda e: (distance(e), e["env_steps"]))
    medium = pick["env_steps"]
    short = medium_shortfalls(pick, args)
    met = [k for k, v in short.items() if v == 0]
    missed = [f"{k} (short by {100 * v:.0f}%)" for k, v in short.items() if v > 0]
    print(f"medium: step {medium} meets {len(met)}/{len(short)} criteria" + (f"; misses {missed}" if missed else ""))
    results = {medium: reevaluate(run_dir, medium, args.episodes, args.seed)}
    how = "the earliest snapshot whose" if not missed else "the snapshot closest to D4RL's medium: its"
    ship(
        run_dir,
        medium,
        policy_dir / "hopper-medium",
        results[medium],
        f"{how} {pick['episodes']}-episode stochastic evaluation meets {'; '.join(met) or 'no criterion'}"
        + (f"; misses {'; '.join(missed)}" if missed else ""),
        training_eval=summary_of(pick),
    )
    ship_replay_snapshots(
        run_dir, medium, policy_dir / "hopper-replay-snapshots", config["learning_starts"], config["eval_every"]
    )

    # expert: the best stochastic mean of the run, shipped only if it reaches --expert-min (else ARS stays).
    top = max(evals, key=lambda e: e["mean"])
    expert = None
    if top["mean"] >= args.expert_min and top["env_steps"] != medium:
        results[top["env_steps"]] = r = reevaluate(run_dir, top["env_steps"], args.episodes, args.seed)
        if r["stochastic"]["mean"] >= args.expert_min:
            expert = top["env_steps"]
            ship(
                run_dir,
                expert,
                policy_dir / "hopper-expert",
                r,
                f"best {top['episodes']}-episode stochastic mean of the run ({log_span(evals)})",
                training_eval=summary_of(top),
            )
    if expert is None:
        print(
            f"expert: best SAC snapshot {top['env_steps']} averages {top['mean']:.0f} < {args.expert_min:.0f}; "
            "the shipped expert is unchanged"
        )

    for name in ("log.jsonl", "evals.jsonl"):
        shutil.copyfile(run_dir / name, policy_dir / f"sac-hopper-{name}")
    summary = summarise(evals, config, {"medium": medium, "expert": expert}, results, read_log(run_dir))
    (policy_dir / "hopper-selection.md").write_text(summary)
    print(summary)


def summary_of(e: dict) -> dict:
    keys = ("episodes", "seeds", "mean", "std", "min", "p10", "p90", "max", "mean_len", "full_frac")
    return {k: e[k] for k in keys}


def log_span(evals: list[dict]) -> str:
    return (
        f"snapshots every {evals[1]['env_steps'] - evals[0]['env_steps']:,} env steps up to {evals[-1]['env_steps']:,}"
    )


def summarise(
    evals: list[dict], config: dict, chosen: dict[str, int | None], results: dict[int, dict], log: list[dict]
) -> str:
    """Markdown: speed, the chosen snapshots with their re-evaluations, the return distribution vs env steps."""
    rates = [ln["steps_per_s"] for ln in log if ln["steps_per_s"] > 0]
    lines = [
        "# SAC Hopper-v4 run: selected behaviour policies",
        "",
        "Generated by `python -m dt.behaviour.sac select " + " ".join(_ARGV) + "`.",
        f"Run: seed {config['seed']}, device {config.get('device', 'cpu')}, {log[-1]['env_steps']:,} env steps, "
        f"{log[-1]['wall_s'] / 3600:.2f} h of training wall time, median {np.median(rates):.0f} env steps/s "
        "(one update per env step).",
        "",
        "| policy | env steps | stochastic return (re-evaluated) | deterministic return |",
        "|---|---:|---:|---:|",
    ]
    for name, step in chosen.items():
        if step is not None and step in results:
            r = results[step]
            lines.append(
                f"| {name} | {step:,} | {r['stochastic']['mean']:.0f} +- {r['stochastic']['std']:.0f} "
                f"({r['episodes']} ep, max {r['stochastic']['max']:.0f}) "
                f"| {r['deterministic']['mean']:.0f} +- {r['deterministic']['std']:.0f} |"
            )
    lines += [
        "",
        "Stochastic evaluation of every snapshot (the mode that collects the datasets):",
        "",
        "| env steps | episodes | mean +- std | min | p10 | p90 | max | mean length | reach 1000 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in evals:
        lines.append(
            f"| {e['env_steps']:,} | {e['episodes']} | {e['mean']:.0f} +- {e['std']:.0f} | {e['min']:.0f} "
            f"| {e['p10']:.0f} | {e['p90']:.0f} | {e['max']:.0f} | {e['mean_len']:.0f} | {100 * e['full_frac']:.0f}% |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(run_cli(main))
