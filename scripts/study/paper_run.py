"""What the study scripts share: the paper configuration on hopper-medium as they run it (bf16, one thread,
periodic evaluations every 2,000 steps, a save every 1,000), and the loop that prints evaluations (and, with
``losses``, the loss every 500 steps) as they come."""

from pathlib import Path

from dt.config import TrainConfig
from dt.train.trainer import Trainer


def paper_trainer(out: str, steps: int, seed: int = 0, eval_episodes: int = 20, **extra) -> Trainer:
    """A trainer for the study's run in ``out`` (resumed when ``out`` already holds one)."""
    cfg = TrainConfig(
        dataset="hopper-medium",
        bf16=True,
        num_threads=1,
        max_steps=steps,
        eval_every=2000,
        eval_episodes=eval_episodes,
        save_every=1000,
        out_dir=out,
        tensorboard=False,
        seed=seed,
        resume=(Path(out) / "checkpoint").exists(),
        **extra,
    )
    return Trainer(cfg)


def run_and_print(tr: Trainer, losses: bool = False) -> None:
    for rec in tr.iterate():
        if "eval" in rec:
            print(
                rec["step"], [(r["target"], round(r["normalized_mean"], 1)) for r in rec["eval"]["results"]], flush=True
            )
        elif losses and rec.get("step", 0) % 500 == 0 and "loss" in rec:
            print(rec["step"], round(rec["loss"], 4), flush=True)
