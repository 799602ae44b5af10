"""Pick the medium and expert snapshots of an SAC run and copy them into ``dt/behaviour/policies/``.

D4RL's recipe: "medium" is the policy early-stopped at about a third of expert return, "expert" a fully trained
one. Candidates are screened by the run's 10-episode evaluations in ``log.jsonl`` and re-evaluated over
``--episodes`` (>= 20) episodes in both modes; the stochastic return decides, as the stochastic policy is what
generates the datasets.

- medium: the earliest snapshot whose re-evaluated stochastic mean lies in ``--medium-range``.
- expert: the best re-evaluated stochastic mean among the ``--expert-candidates`` best logged snapshots, shipped
  once it beats the medium range (labelled best-so-far in policy.json while below ``--expert-min``).
- hopper-replay-snapshots: every snapshot before the medium one, in fp16, so that medium-replay can be
  regenerated approximately (rows [s, s + 10k) of the replay buffer were collected by the actor between
  snapshot s and the next one).

    python -m dt.behaviour.sac select --run-dir runs/sac-hopper
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from dt.behaviour.policy import POLICY_DIR, evaluate_modes, load_snapshot, save_snapshot

REPLAY_LIMIT_BYTES = 5 * 1024 * 1024
_ARGV: list[str] = []  # the select arguments, recorded in the shipped policy.json


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run_dir / "log.jsonl").read_text().splitlines() if ln.strip()]


def snapshot_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "snapshots" / f"step_{step:07d}"


def reevaluate(run_dir: Path, step: int, episodes: int, seed: int) -> dict:
    """Evaluate a run snapshot over ``episodes`` episodes in both modes."""
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
    meta["eval_during_training"] = meta.pop("eval")
    meta["eval"] = evaluation
    meta["selected_by"] = selected_by
    meta.update(extra)
    meta["source"] = f"{run_dir.name}/snapshots/{src.name}"
    meta["select_command"] = "python -m dt.behaviour.sac select " + " ".join(_ARGV)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_snapshot(tmp, policy.actor, meta)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.replace(dest)
    print(f"shipped {dest} <- {src}", flush=True)


def ship_replay_snapshots(run_dir: Path, medium_step: int, dest: Path, learning_starts: int, interval: int) -> bool:
    """Write every snapshot before ``medium_step`` into one fp16 safetensors file, if it stays under 5 MB."""
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
        print(f"replay snapshots would take {nbytes / 1e6:.1f} MB > 5 MB; kept only in {run_dir}/snapshots")
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dt.behaviour.sac select", description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", default="runs/sac-hopper", help="run directory of dt.behaviour.sac")
    parser.add_argument("--policy-dir", default=str(POLICY_DIR), help="where the shipped snapshots go")
    parser.add_argument("--episodes", type=int, default=20, help="episodes per re-evaluation and mode (>= 20)")
    parser.add_argument("--seed", type=int, default=0, help="episode i resets with seed + i")
    parser.add_argument("--medium-range", type=float, nargs=2, default=(1000.0, 1600.0), help="stochastic return")
    parser.add_argument("--screen-margin", type=float, default=300.0, help="widen the range by this for screening")
    parser.add_argument("--expert-candidates", type=int, default=4, help="best logged snapshots to re-evaluate")
    parser.add_argument("--expert-min", type=float, default=3000.0, help="return below which expert is best-so-far")
    argv = sys.argv[1:] if argv is None else argv
    _ARGV[:] = argv
    args = parser.parse_args(argv)
    if args.episodes < 20:
        parser.error("--episodes must be >= 20")
    run_dir, policy_dir = Path(args.run_dir), Path(args.policy_dir)
    config = json.loads((run_dir / "config.json").read_text())
    log = [ln for ln in read_log(run_dir) if snapshot_dir(run_dir, ln["env_steps"]).exists()]
    lo, hi = args.medium_range
    results: dict[int, dict] = {}

    print(f"medium: earliest snapshot with stochastic return in [{lo}, {hi}] over {args.episodes} episodes")
    medium = None
    for ln in log:
        if lo - args.screen_margin <= ln["eval_stochastic_mean"] <= hi + args.screen_margin:
            results[ln["env_steps"]] = r = reevaluate(run_dir, ln["env_steps"], args.episodes, args.seed)
            if lo <= r["stochastic"]["mean"] <= hi:
                medium = ln["env_steps"]
                break
    if medium is None:
        print("  no medium snapshot yet")
    else:
        ship(
            run_dir,
            medium,
            policy_dir / "hopper-medium",
            results[medium],
            f"earliest snapshot with {args.episodes}-episode stochastic return in [{lo}, {hi}]",
        )
        ship_replay_snapshots(
            run_dir, medium, policy_dir / "hopper-replay-snapshots", config["learning_starts"], config["eval_every"]
        )

    print(f"expert: best stochastic return among the {args.expert_candidates} best logged snapshots")
    best = sorted(log, key=lambda ln: ln["eval_stochastic_mean"])[-args.expert_candidates :]
    for ln in best:
        if ln["env_steps"] not in results:
            results[ln["env_steps"]] = reevaluate(run_dir, ln["env_steps"], args.episodes, args.seed)
    expert = max((ln["env_steps"] for ln in best), key=lambda s: results[s]["stochastic"]["mean"])
    ret = results[expert]["stochastic"]["mean"]
    if ret <= hi or (medium is not None and ret <= results[medium]["stochastic"]["mean"]):
        print(f"  no snapshot above the medium range yet ({ret:.0f} <= {hi:.0f}); expert not shipped")
        expert = None
    else:
        note = "" if ret >= args.expert_min else f" (BELOW the {args.expert_min:.0f} target: best so far)"
        ship(
            run_dir,
            expert,
            policy_dir / "hopper-expert",
            results[expert],
            f"best {args.episodes}-episode stochastic return among the {args.expert_candidates} best logged "
            f"snapshots at {log[-1]['env_steps']} env steps{note}",
            target_return=args.expert_min,
            target_met=bool(ret >= args.expert_min),
        )

    shutil.copyfile(run_dir / "log.jsonl", policy_dir / "sac-hopper-log.jsonl")
    print(f"copied {run_dir / 'log.jsonl'} -> {policy_dir / 'sac-hopper-log.jsonl'}")
    summary = summarise(log, config, {"medium": medium, "expert": expert}, results)
    (policy_dir / "hopper-selection.md").write_text(summary)
    print(summary)


def summarise(log: list[dict], config: dict, chosen: dict[str, int | None], results: dict[int, dict]) -> str:
    """Markdown: speed, the chosen snapshots with their re-evaluations, return vs env steps."""
    rates = [ln["steps_per_s"] for ln in log if ln["steps_per_s"] > 0]
    lines = [
        "# SAC Hopper-v4 run: selected behaviour policies",
        "",
        "Generated by `python -m dt.behaviour.sac select " + " ".join(_ARGV) + "`.",
        f"Run: seed {config['seed']}, {log[-1]['env_steps']:,} env steps so far, "
        f"{log[-1]['wall_s'] / 3600:.2f} h of training wall time, median {np.median(rates):.1f} env steps/s "
        "(with one update per step, one torch thread).",
        "",
        "| policy | env steps | stochastic return (20+ ep) | deterministic return (20+ ep) |",
        "|---|---:|---:|---:|",
    ]
    for name, step in chosen.items():
        if step is not None and step in results:
            r = results[step]
            lines.append(
                f"| {name} | {step:,} | {r['stochastic']['mean']:.0f} +- {r['stochastic']['std']:.0f} "
                f"| {r['deterministic']['mean']:.0f} +- {r['deterministic']['std']:.0f} |"
            )
    lines += ["", "| env steps | eval stochastic (10 ep) | eval deterministic (10 ep) |", "|---:|---:|---:|"]
    for ln in log:
        if ln["env_steps"] % 20_000 == 0 or ln["env_steps"] in chosen.values() or ln is log[-1]:
            lines.append(
                f"| {ln['env_steps']:,} | {ln['eval_stochastic_mean']:.0f} +- {ln['eval_stochastic_std']:.0f} "
                f"| {ln['eval_deterministic_mean']:.0f} +- {ln['eval_deterministic_std']:.0f} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
