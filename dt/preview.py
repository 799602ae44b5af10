"""Precomputed first rollouts: the default episode's MP4 and arrays, stored beside a checkpoint.

Opening the app on a cold server costs seconds before the first rollout can even start (importing
torch and transformers alone takes several). So the default episode of each checkpoint (its first paper
target, seed 0, the app's video settings) is computed once, by ``python -m dt.preview CHECKPOINT...``, and
stored in ``<checkpoint>/preview/<key>.mp4`` + ``<key>.npz``. The key hashes everything the episode
depends on: the weights and the metadata that shapes a rollout (``content_hash``), target, seed, episode
cap, gym version and render settings; when any of them differs the file is simply not found and the app
computes the episode live. Reading a preview imports neither torch nor MuJoCo, so the app can show it
before it loads anything heavy.

Example:
    ``python -m dt.preview checkpoints/*`` (writes one preview per checkpoint, removes stale ones)
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dt.atomic import write_atomic
from dt.checkpoint.meta import META_FILE, WEIGHTS_FILE
from dt.cli.flags import from_args, opt, parser_for
from dt.errors import run_cli
from dt.validate import MAX_EPISODE_STEPS, MAX_SEED, MAX_TARGET, check_fields, integer, number

if TYPE_CHECKING:
    from dt.eval.evaluate import Rollout

PREVIEW_VERSION = 1
PREVIEW_DIR = "preview"
# The metadata fields that change what a rollout does (evaluation results and dates do not).
_ROLLOUT_FIELDS = ("env", "state_mean", "state_std", "scale", "max_ep_len", "model")
ARRAYS = ("observations", "actions", "rewards", "returns_to_go", "qpos", "qvel")


@dataclass(frozen=True)
class VideoSettings:
    """How an episode is rendered (the app's settings are :data:`APP_VIDEO`).

    The app's: the renderer's fast scene at a real-time stride (see dt.render), 25 fps (Hopper: every 5th step,
    played at exactly 25 fps) at 320 px. Slider release to a playing 1000-step video is bounded by CPU on 2 cores
    (rollout, render and encode run at once): 320 px costs 0.8 CPU-s to draw and 0.4 to encode against 1.3 and
    0.55 at 400 px, which took slider release from 3.7-4.5 s to 2.4-3.0 s (AMD EPYC, with the render process).
    The Playground's MP4 download is rendered larger when clicked.
    """

    width: int = 320
    height: int = 320
    fps: float = 25.0


APP_VIDEO = VideoSettings()

_hash_cache: dict[tuple[str, float, int, float], str] = {}


def content_hash(ckpt_dir: str | Path) -> str:
    """SHA-256 of the weights and of the metadata that shapes a rollout (cached per file version)."""
    d = Path(ckpt_dir)
    w, m = d / WEIGHTS_FILE, d / META_FILE
    ws, ms = w.stat(), m.stat()
    key = (str(d.resolve()), ws.st_mtime, ws.st_size, ms.st_mtime)
    if key not in _hash_cache:
        meta = json.loads(m.read_text())
        h = hashlib.sha256()
        with open(w, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        rollout_meta = {k: meta.get(k) for k in _ROLLOUT_FIELDS}
        rollout_meta["delayed"] = bool((meta.get("train") or {}).get("delayed", False))
        h.update(json.dumps(rollout_meta, sort_keys=True).encode())
        _hash_cache[key] = h.hexdigest()
    return _hash_cache[key]


def preview_key(
    ckpt_dir: str | Path,
    target: float,
    seed: int,
    max_steps: int | None = None,
    video: VideoSettings = APP_VIDEO,
    gym_version: str = "v4",
) -> str:
    """The file stem of this episode's preview."""
    parts = {
        "version": PREVIEW_VERSION,
        "checkpoint": content_hash(ckpt_dir),
        "target": round(float(target), 6),
        "seed": int(seed),
        "max_steps": max_steps,
        "gym": gym_version,
        "video": asdict(video),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Preview:
    """A stored episode: MP4 bytes and the rollout's arrays (see :data:`ARRAYS`)."""

    mp4: bytes
    arrays: dict[str, np.ndarray]
    target: float
    seed: int
    terminated: bool

    def rollout(self) -> Rollout:
        """The stored episode as a :class:`dt.eval.evaluate.Rollout` (imports torch, via dt.eval.evaluate)."""
        from dt.eval.evaluate import Rollout

        a = self.arrays
        return Rollout(
            target=self.target,
            seed=self.seed,
            observations=a["observations"],
            actions=a["actions"],
            rewards=a["rewards"].astype(np.float64),
            returns_to_go=a["returns_to_go"].astype(np.float64),
            qpos=a["qpos"].astype(np.float64),
            qvel=a["qvel"].astype(np.float64),
            terminated=self.terminated,
        )


def load_preview(
    ckpt_dir: str | Path,
    target: float,
    seed: int,
    max_steps: int | None = None,
    video: VideoSettings = APP_VIDEO,
) -> Preview | None:
    """The stored preview for exactly these settings, or None (also for an unreadable file)."""
    try:
        stem = Path(ckpt_dir) / PREVIEW_DIR / preview_key(ckpt_dir, target, seed, max_steps, video)
        mp4 = stem.with_suffix(".mp4").read_bytes()
        with np.load(stem.with_suffix(".npz")) as z:
            arrays = {k: z[k] for k in ARRAYS}
            terminated = bool(z["terminated"])
    except (OSError, ValueError, KeyError):
        return None
    return Preview(mp4, arrays, float(target), int(seed), terminated)


def make_preview(
    ckpt_dir: str | Path,
    target: float | None = None,
    seed: int = 0,
    max_steps: int | None = None,
    video: VideoSettings = APP_VIDEO,
    prune: bool = True,
) -> Path:
    """Roll out, render and store the preview of ``ckpt_dir`` (default target: the env's first paper target).

    Args:
        ckpt_dir: Checkpoint directory.
        target: Target return; default the env's first paper target, which the app opens with.
        seed: Env seed (the app opens with 0).
        max_steps: Episode cap, as the app's ``DT_MAX_STEPS``.
        video: Render settings.
        prune: Remove the checkpoint's other previews (stale after a change of weights or settings).

    Returns:
        Path of the MP4.
    """
    import torch

    from dt.checkpoint.store import load_checkpoint
    from dt.envs import get_env
    from dt.eval.evaluate import rollout
    from dt.render import render_mp4

    torch.set_num_threads(1)  # as the app runs its rollouts, so the same seed gives the same episode
    ck = load_checkpoint(ckpt_dir)
    target = float(get_env(ck.env_name).targets[0] if target is None else target)
    r = rollout(ck, target, seed=seed, max_steps=max_steps)
    mp4 = render_mp4(ck.env_name, r.qpos, r.qvel, target_fps=video.fps, width=video.width, height=video.height)
    out = Path(ckpt_dir) / PREVIEW_DIR
    out.mkdir(exist_ok=True)
    stem = preview_key(ckpt_dir, target, seed, max_steps, video)
    buf = io.BytesIO()
    # Rewards and returns-to-go in full precision (the achieved return shown must match a live rollout);
    # states and actions in float32, plenty for pictures and charts.
    exact = ("rewards", "returns_to_go")
    arrays = {k: np.asarray(getattr(r, k), dtype=np.float64 if k in exact else np.float32) for k in ARRAYS}
    arrays["terminated"] = np.asarray(r.terminated)
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as its bool flag
    write_atomic(out / f"{stem}.npz", buf.getvalue())
    write_atomic(out / f"{stem}.mp4", mp4)
    if prune:
        for f in out.iterdir():
            if f.suffix in (".mp4", ".npz") and f.stem != stem:
                f.unlink()
    return out / f"{stem}.mp4"


@dataclass
class PreviewArgs:
    """Flags of ``python -m dt.preview``."""

    checkpoints: list[str] = opt(help="checkpoint directories", positional=True)
    target: float | None = opt(
        None,
        "target return (default: the env's first paper target)",
        rule=lambda v: None if v is None else number(-MAX_TARGET, MAX_TARGET)(v),
    )
    seed: int = opt(0, "env seed (the app opens with 0)", rule=integer(0, MAX_SEED))
    max_steps: int | None = opt(
        None,
        "episode cap (the app's DT_MAX_STEPS)",
        rule=lambda v: None if v is None else integer(1, MAX_EPISODE_STEPS)(v),
    )


def main(argv: list[str] | None = None) -> None:
    """Write the default episode's preview (MP4 + arrays) beside each checkpoint, for a fast first video."""
    parser = parser_for(PreviewArgs, "python -m dt.preview", main.__doc__ or "")
    args = from_args(PreviewArgs, parser.parse_args(argv))
    check_fields(args)
    for d in args.checkpoints:
        t0 = time.perf_counter()
        path = make_preview(d, args.target, args.seed, args.max_steps)
        size = path.stat().st_size + path.with_suffix(".npz").stat().st_size
        print(f"{path} ({size / 1e3:.0f} KB in all, {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    sys.exit(run_cli(main))
