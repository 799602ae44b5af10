"""Model cards: evaluation at the paper's targets, a calibration sweep, and a README per checkpoint.

``python -m dt card --checkpoint DIR`` evaluates the checkpoint (batched),
runs a target sweep, and writes into the checkpoint directory:
``evaluation.json``, ``calibration.png`` and ``README.md`` (the card). The
files sit beside the weights, so the card travels with the checkpoint.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dt.checkpoint.meta import EvalPoint
from dt.checkpoint.store import Checkpoint, load_checkpoint, read_meta, update_meta
from dt.envs import get_env
from dt.errors import CheckpointError
from dt.eval.alignment import Alignment, AlignmentError, alignment, alignment_targets, even_targets, followed_range
from dt.eval.calibration import spearman
from dt.eval.evaluate import EvalResult, evaluate, target_sweep
from dt.eval.metrics import duration_text, legs_text, machine_text, settled_sentence
from dt.eval.plots import episodes_per_point, plot_calibration, plot_learning_curve
from dt.eval.steering import card_section, measure_steering, probe_schedules
from dt.validate import is_transformer

PUBLISHED = {  # D4RL normalized scores from the papers (see DESIGN.md)
    ("dt", "hopper-medium"): "67.6 +- 1.0",
    ("bc", "hopper-medium"): "63.9",
    ("bc10", "hopper-medium"): "65.9",
    ("dt-delayed", "hopper-medium"): "60.7",
    ("dt", "hopper-medium-replay"): "82.7",
    ("dt", "hopper-medium-expert"): "107.6",
    ("bc", "hopper-medium-replay"): "27.6",
    ("bc", "hopper-medium-expert"): "79.6",
}


def sweep_targets(ck: Checkpoint, n: int = 9) -> np.ndarray:
    """``n`` evenly spaced round targets from 0 to 20% above the dataset's best return (at least the paper's
    first target), for the calibration sweep."""
    best = float(ck.info.dataset.return_max or 0.0)
    top = max(1.2 * best, get_env(ck.env_name).targets[0])
    step = 10 ** max(1, int(np.log10(top / (n - 1))))  # a round last target: 4,000 rather than 3,956 for Hopper
    return np.array(even_targets(0.0, float(np.ceil(top / (n - 1) / step) * step * (n - 1)), n))


def calibration_rho(ck: Checkpoint, sweep: list[EvalResult]) -> tuple[float, float]:
    """Spearman's rho between target and mean achieved return over the whole sweep, and over the targets
    inside the dataset's return range (where the data can show the policy what to do)."""
    t = np.array([r.target for r in sweep])
    mean = np.array([r.return_mean for r in sweep])
    best = float(ck.info.dataset.return_max or np.inf)
    inside = t <= best
    rho_in = spearman(list(t[inside]), list(mean[inside])) if inside.sum() >= 3 else float("nan")
    return spearman(list(t), list(mean)), rho_in


CARD_MARK = "<!-- model card written by `python -m dt card`; running it again replaces this file -->"
_OLD_CARD = re.compile(r"# .*\n\n[A-Z0-9_-]+ on `[^`\n]*` \(.* data\), env `[^`\n]*`\.\n\n## Scores\n")


def check_card_target(ckpt_dir: Path, force: bool = False) -> None:
    """Refuse, before the evaluation, to replace a ``README.md`` that is not a card (unless ``force``)."""
    readme = ckpt_dir / "README.md"
    text = "" if force or not readme.is_file() else readme.read_text(encoding="utf-8", errors="replace")
    if text and CARD_MARK not in text and not _OLD_CARD.match(text):
        raise CheckpointError(f"{readme}: a README that is not a model card would be replaced; move it or pass --force")


def write_card(
    ckpt_dir: str | Path, episodes: int = 100, sweep_episodes: int = 20, seed: int = 0, force: bool = False
) -> Path:
    """Evaluate, sweep and write the card into ``ckpt_dir`` (see :func:`check_card_target`); returns the README."""
    ckpt_dir = Path(ckpt_dir)
    ck = load_checkpoint(ckpt_dir)
    check_card_target(ckpt_dir, force)
    spec = get_env(ck.env_name)
    t0 = time.perf_counter()
    res = evaluate(ck, list(spec.targets), episodes=episodes, seed=seed)
    eval_s = time.perf_counter() - t0
    sweep: list[EvalResult] = []
    align: Alignment | None = None
    if is_transformer(ck.config.model_type):
        wanted = _alignment_targets(ck)
        calib = {float(t) for t in sweep_targets(ck)}
        swept = target_sweep(ck, sorted(calib | set(wanted)), episodes=sweep_episodes, seed=seed)  # one batched run
        sweep = [r for r in swept if r.target in calib]
        if wanted:
            align = alignment(ck.env_name, [r for r in swept if r.target in wanted])
        plot_calibration(ck, sweep, ckpt_dir / "calibration.png")
    out = {
        "checkpoint": ckpt_dir.name,
        "command": f"python -m dt evaluate --checkpoint {ckpt_dir} --episodes {episodes} --seed {seed}",
        "results": [r.as_dict() for r in res],
        "sweep": [r.as_dict() for r in sweep],
        "seconds": round(eval_s, 1),
    }
    if sweep:
        rho_all, rho_in = calibration_rho(ck, sweep)
        out["calibration"] = {
            "spearman_rho": None if np.isnan(rho_all) else round(rho_all, 3),
            "spearman_rho_in_data_range": None if np.isnan(rho_in) else round(rho_in, 3),
            # How far the target moves the behaviour: the spread of the sweep's mean achieved returns.
            "achieved_range": round(float(np.ptp([r.return_mean for r in sweep])), 1),
        }
    if align is not None:
        out["alignment"] = align.as_dict()
        out["calibration"]["alignment_gap"] = round(align.gap, 2)
        follows = followed_range(swept)
        out["calibration"]["follows"] = None if follows is None else list(follows)
    steering: list[dict[str, Any]] = []
    if sweep:  # a model that follows its target: how far changing it mid-episode moves the return
        probes = probe_schedules(float(ck.info.dataset.return_max or spec.targets[0]), ck.info.max_ep_len)
        steering = out["calibration"]["steering"] = measure_steering(ck, probes, min(10, sweep_episodes), seed)
    (ckpt_dir / "evaluation.json").write_text(json.dumps(out, indent=2) + "\n")
    plot_learning_curve(ck, ckpt_dir / "learning.png")
    # The app's picker shows checkpoint.json's "eval": make it the card's evaluation, so both show the same numbers.
    update_meta(ckpt_dir, eval=out["results"], calibration=out.get("calibration"))
    (ckpt_dir / "README.md").write_text(card_markdown(ck, res, sweep, episodes, seed, align, steering))
    return ckpt_dir / "README.md"


def _alignment_targets(ck: Checkpoint) -> list[float]:
    """The alignment sweep's targets for this checkpoint's data, or none where the data cannot support it."""
    ds = ck.info.dataset
    try:
        return alignment_targets(ck.env_name, ds.return_min, ds.return_max, episodes=ds.episodes)
    except AlignmentError:
        return []


def _f(x: float | None) -> float:
    return 0.0 if x is None else x


def card_markdown(
    ck: Checkpoint,
    res: list[EvalResult],
    sweep: list[EvalResult],
    episodes: int,
    seed: int,
    align: Alignment | None = None,
    steering: Sequence[Mapping[str, Any]] = (),
) -> str:
    """A checkpoint's model card: scores, calibration, alignment, learning curve, data and training."""
    name = ck.path.name if ck.path else "checkpoint"
    m = ck.info
    lines = [
        f"# {name}",
        "",
        f"{m.method.upper()} on `{m.dataset.name}` ({m.dataset.kind or '?'} data), env `{m.gym_id or m.env}`.",
        "",
        *_scores_section(ck, name, res, episodes, seed),
        *(_calibration_section(ck, sweep) if sweep else []),
        *(_alignment_section(align, sweep) if align is not None else []),
        *(card_section(steering) if steering else []),
        *(_learning_section(m.eval_history) if m.eval_history else []),
        *_data_and_training_section(ck),
        "",
        CARD_MARK,
    ]
    return "\n".join(lines)


def _row(label: str, values: Sequence[str]) -> list[str]:
    """A one-row Markdown table under a ``target`` header row."""
    return ["| " + label + " | " + " | ".join(values) + " |", "|---|" + "---|" * len(values)]


def _scores_section(ck: Checkpoint, name: str, res: list[EvalResult], episodes: int, seed: int) -> list[str]:
    pub = PUBLISHED.get((ck.info.method, ck.info.dataset.name), "n/a")
    lines = [
        "## Scores",
        "",
        f"D4RL normalized score, {episodes} episodes per target, seeds {seed}..{seed + episodes - 1}, last checkpoint.",
        "",
        "| target | return (mean +- std) | normalized (mean +- std) | mean length | published (D4RL data) |",
        "|---|---|---|---|---|",
        *(
            f"| {r.target:.0f} | {r.return_mean:.1f} +- {r.return_std:.1f} | {r.normalized_mean:.1f} +- "
            f"{r.normalized_std:.1f} | {r.lengths.mean():.0f} | {pub} |"
            for r in res
        ),
        "",
        f"Reproduce: `python -m dt evaluate --checkpoint checkpoints/{name} --episodes {episodes} --seed {seed}`.",
        "The published figures were measured on D4RL's own files; this checkpoint was trained on the dataset below.",
        "",
    ]
    if not is_transformer(ck.config.model_type):
        lines[-1:-1] = ["BC is not conditioned on a return, so both targets run the same episodes."]
    return lines


def _calibration_section(ck: Checkpoint, sweep: list[EvalResult]) -> list[str]:
    rho_all, rho_in = calibration_rho(ck, sweep)
    return [
        "## Calibration",
        "",
        "![calibration](calibration.png)",
        "",
        *_row("target", [f"{r.target:.0f}" for r in sweep]),
        "| achieved | " + " | ".join(f"{r.return_mean:.0f}" for r in sweep) + " |",
        "",
        f"{sweep[0].returns.shape[0]} episodes per target. Spearman's rank correlation between target and "
        f"achieved return: {rho_all:.2f} over all targets, {rho_in:.2f} over the targets inside the data's returns "
        f"(up to {float(ck.info.dataset.return_max or 0):.0f}); the mean achieved return spans "
        f"{np.ptp([r.return_mean for r in sweep]):,.0f} over the sweep.",
        "",
    ]


def _alignment_section(align: Alignment, sweep: list[EvalResult]) -> list[str]:
    follows = followed_range(sweep) if sweep else None
    within = (
        f"The mean return stays within 15% of the target from {follows[0]:,.0f} to {follows[1]:,.0f} (of the "
        "targets measured here), marked green on the Playground's target ruler."
        if follows
        else "The mean return is within 15% of no target measured here."
    )
    return [
        "## Return alignment",
        "",
        *_row("target", [f"{t:,.0f}" for t in align.targets]),
        "| achieved | " + " | ".join(f"{x:,.0f}" for x in align.means) + " |",
        "",
        f"{align.line()} (`dt.eval.alignment`: targets evenly spaced over the data's returns; the gap is the mean "
        "|achieved - target| over all episodes in D4RL normalized points, 0 = follows every target exactly). " + within,
        "",
    ]


def _learning_section(hist: tuple[EvalPoint, ...]) -> list[str]:
    lines = ["## Learning curve", "", "![learning curve](learning.png)", ""]
    lines += _row("step", [f"{e.step:,}" for e in hist])
    for i, r0 in enumerate(hist[-1].results):
        row = [f"{e.results[i].normalized_mean:.1f}" for e in hist if len(e.results) > i]
        lines.append(f"| target {r0.target:.0f} | " + " | ".join(row) + " |")
    return [
        *lines,
        "",
        f"Periodic evaluations during training ({episodes_per_point(hist)} episodes per target, normalized score).",
        "",
    ]


def _data_and_training_section(ck: Checkpoint) -> list[str]:
    m = ck.info
    ds, tr, mach = m.dataset, m.train, m.machine
    return [
        "## Data",
        "",
        f"- dataset: `{ds.name}` ({ds.kind}), {ds.episodes} episodes, "
        f"{ds.transitions} transitions, returns {_f(ds.return_min):.0f} / "
        f"{_f(ds.return_mean):.0f} / {_f(ds.return_max):.0f} (min / mean / max)",
        f"- content sha256: `{ds.sha256 or '?'}`",
        "",
        "## Training",
        "",
        f"- steps: {m.step} of {tr.get('max_steps', '?')}; wall time {duration_text(_f(m.wall_time_s))}"
        + (f": {legs}" if (legs := legs_text(ck.meta.get("legs"))) else f" on {machine_text(mach)}"),
        f"- recipe: {_recipe(tr)}; seed {tr.get('seed', '?')}",
        f"- settled: {settled_sentence([e.as_dict() for e in m.eval_history])}",
        f"- model: {json.dumps(m.model.to_dict())}",
        f"- config: {json.dumps({k: tr[k] for k in sorted(tr) if k not in ('out_dir', 'dataset')})}",
        "",
    ]


def _recipe(tr: Mapping[str, Any]) -> str:
    """The training recipe in one line (the settings a resume must keep, and the model's size)."""
    sched = tr.get("lr_schedule", "constant")
    floor = f" to {tr.get('lr_floor')} x lr" if sched == "cosine" else ""
    ema = f", EMA {tr['ema']}" if tr.get("ema") else ""
    data = ""
    if tr.get("pct_traj", 1.0) < 1.0:
        by_count = tr.get("pct_rule") == "trajectories"
        data = f", best {tr['pct_traj']:.0%} of " + ("trajectories (discounted return)" if by_count else "timesteps")
    noise = f", state noise {tr['state_noise']}" if tr.get("state_noise") else ""
    if tr.get("return_weighting"):
        data += f", return-weighted sampling {tr['return_weighting']}"
    return (
        f"K={tr.get('context_len')}, embed {tr.get('embed_dim')}, {tr.get('n_layer')} layers, {tr.get('n_head')} "
        f"head(s), dropout {tr.get('dropout')}; lr {tr.get('lr')} ({tr.get('warmup_steps')} warm-up steps, then "
        f"{sched}{floor}){ema}, batch {tr.get('batch_size')}, {tr.get('max_steps')} steps{data}{noise}"
    )


def results_table(ckpt_dirs: list[Path]) -> str:
    """Markdown table of the shipped checkpoints' card evaluations beside the published D4RL figures."""
    rows = [
        "| checkpoint | method | dataset | steps | target 3600 (normalized) | target 1800 (normalized) "
        "| published, D4RL data |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in ckpt_dirs:
        ev_file = Path(d) / "evaluation.json"
        if not ev_file.exists():
            continue
        m = read_meta(d)
        ev = json.loads(ev_file.read_text())
        res = {r["target"]: r for r in ev["results"]}
        cells = []
        for t in (3600.0, 1800.0):
            r = res.get(t)
            cells.append(f"{r['normalized_mean']:.1f} +- {r['normalized_std']:.1f}" if r else "n/a")
        ds = m.dataset.name
        pub = PUBLISHED.get((m.method, ds), "n/a")
        max_steps = m.train.get("max_steps", "?")
        rows.append(
            f"| `{Path(d).name}` | {m.method.upper()} | {ds} | {m.step:,} / {max_steps:,} | {cells[0]} | {cells[1]} "
            f"| {pub} |"
        )
    return "\n".join(rows)
