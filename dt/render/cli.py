"""``python -m dt.render``: render a random-action rollout to MP4 and time each stage (``--bench``: fps)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from dt.atomic import write_atomic
from dt.cli.flags import from_args, opt, parser_for
from dt.outputs import check_output_file
from dt.render.scene import DEFAULT_FPS, DEFAULT_HEIGHT, DEFAULT_WIDTH, playback_fps, realtime_stride, rollout_states
from dt.render.video import gif_bytes
from dt.render.worker import get_render_worker, render_frames, render_mp4
from dt.validate import MAX_EPISODE_STEPS, MAX_SEED, check_fields, integer, number

MAX_FRAME_SIDE = 4096  # pixels: a 4K frame; larger ones exceed what GL drivers offer off screen


@dataclass
class RenderArgs:
    """Flags of ``python -m dt.render``."""

    env: str = opt("hopper", "env short name or gym id")
    steps: int = opt(1000, "rollout length in env steps", rule=integer(1, MAX_EPISODE_STEPS))
    seed: int = opt(0, "seed for reset and random actions", rule=integer(0, MAX_SEED))
    fps: float = opt(DEFAULT_FPS, "target video fps (real-time stride is derived)", rule=number(1, 240))
    width: int = opt(DEFAULT_WIDTH, "frame width in pixels", rule=integer(16, MAX_FRAME_SIDE))
    height: int = opt(DEFAULT_HEIGHT, "frame height in pixels", rule=integer(16, MAX_FRAME_SIDE))
    slow: bool = opt(False, "keep shadows, reflections and anti-aliasing")
    out: str = opt("render.mp4", "MP4 output path")
    gif: str | None = opt(None, "also write a small GIF here")
    png: str | None = opt(None, "also write the middle frame as PNG here")
    bench: bool = opt(False, "also measure fps with default vs fast settings")


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds used so far by this process (all threads) and by its finished children (ffmpeg).

    Wall time depends on what else the machine runs; CPU time mostly does not.
    """
    import resource  # Unix only, and only needed here

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def _bench_fps(env_name: str, qpos: np.ndarray, width: int, height: int, fast: bool, n: int) -> tuple[float, float]:
    """Frames per second and CPU ms per frame for ``n`` draws on the render thread (scene creation excluded)."""
    worker = get_render_worker()

    def job() -> tuple[float, float]:
        scene = worker.scene(env_name, width, height, fast)
        out = np.empty((height, width, 3), dtype=np.uint8)
        scene.render(qpos[0], out=out)  # warm-up: the first draw uploads textures
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(n):
            scene.render(qpos[i % len(qpos)], out=out)
        return n / (time.perf_counter() - start), (time.process_time() - cpu) / n * 1e3

    return worker.call(job)


def main(argv: list[str] | None = None) -> None:
    """Render a random-action rollout to MP4 and print how long each stage took.

    Example:
        ``python -m dt.render --env hopper --steps 1000 --out /tmp/x.mp4 --bench``
    """
    parser = parser_for(RenderArgs, "python -m dt.render", main.__doc__.splitlines()[0])
    args = from_args(RenderArgs, parser.parse_args(argv))
    check_fields(args)
    for name in ("out", "gif", "png"):  # before the rollout and the render, not after them
        if getattr(args, name) is not None:
            check_output_file(getattr(args, name), f"--{name}", create_parent=True)  # write_atomic makes it
    fast = not args.slow

    t0 = time.perf_counter()
    qpos, qvel = rollout_states(args.env, args.steps, seed=args.seed)
    print(f"rollout: {args.steps} steps in {time.perf_counter() - t0:.2f} s")

    stride = realtime_stride(args.env, args.fps)
    fps = playback_fps(args.env, stride)
    n_frames = len(range(0, args.steps, stride))
    # Build the scene first so the timing below is the per-request cost in a
    # long-lived app, where the scene stays cached on the worker.
    get_render_worker().prepare(args.env, args.width, args.height, fast)

    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    data = render_mp4(args.env, qpos, qvel, stride=stride, width=args.width, height=args.height, fast=fast)
    total, cpu = time.perf_counter() - t0, [b - a for a, b in zip(cpu0, _cpu_seconds())]
    write_atomic(args.out, data)
    print(
        f"states -> MP4 bytes: {total:.2f} s for {args.steps} steps ({n_frames} frames, stride {stride}, "
        f"{fps:g} fps, {args.width}x{args.height}, fast={fast}); {len(data) / 1e6:.2f} MB -> {args.out}\n"
        f"  CPU time: {cpu[0]:.2f} s rendering (all threads) + {cpu[1]:.2f} s ffmpeg; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )

    if args.gif or args.png:
        frames = render_frames(args.env, qpos, qvel, stride=stride, width=args.width, height=args.height, fast=fast)
        if args.png:
            import imageio.v3 as iio

            write_atomic(args.png, iio.imwrite("<bytes>", frames[len(frames) // 2], extension=".png"))
            print(f"PNG: {args.png}")
        if args.gif:
            t0 = time.perf_counter()
            gif = gif_bytes(frames, fps)
            write_atomic(args.gif, gif)
            print(f"GIF: {time.perf_counter() - t0:.2f} s, {len(gif) / 1e6:.2f} MB -> {args.gif}")

    if args.bench:
        n = 60
        default, default_cpu = _bench_fps(args.env, qpos, args.width, args.height, fast=False, n=n // 4)
        quick, quick_cpu = _bench_fps(args.env, qpos, args.width, args.height, fast=True, n=n)
        print(
            f"render at {args.width}x{args.height}: default {default:.1f} fps ({default_cpu:.0f} CPU-ms/frame), "
            f"fast {quick:.1f} fps ({quick_cpu:.0f} CPU-ms/frame); {quick / default:.1f}x"
        )
