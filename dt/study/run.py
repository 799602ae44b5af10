"""Running a study's jobs as ``python -m dt`` processes, ``parallel`` at a time, resumable (see :mod:`dt.study`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dt.atomic import write_atomic
from dt.study.plan import Job, Plan, check_plan_fits, jobs_of


@dataclass
class _Running:
    job: Job
    phase: str  # "train" or "evaluate"
    proc: subprocess.Popen
    started: float
    log: Any


def _launch(job: Job, phase: str, argv: list[str], log_to: Any) -> _Running:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.setdefault("MUJOCO_GL", "egl")
    print(f"$ python -m dt {phase} {' '.join(argv)}", file=log_to, flush=True)
    # A session of its own: a terminal's Ctrl-C reaches the study only, which forwards exactly one SIGINT (a
    # second one makes a trainer quit without saving).
    cmd = [sys.executable, "-m", "dt", phase, *argv]
    proc = subprocess.Popen(cmd, stdout=log_to, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return _Running(job, phase, proc, time.monotonic(), log_to)


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][-300:] if lines else ""


def run_study(root: Path, plan: Plan, parallel: int = 2, say: Any = print) -> int:
    """Run every job that is not done, ``parallel`` at a time; return 0, 1 if a job failed, 130 if interrupted.

    Ctrl-C (or SIGTERM) asks each running training to save and stop (it saves on SIGINT), so the next call
    resumes it; the wall seconds of every leg are added to the job's state.
    """
    root.mkdir(parents=True, exist_ok=True)
    check_plan_fits(root, plan)
    write_atomic(root / "plan.json", json.dumps(plan.to_dict(), indent=1) + "\n")
    pending = [j for j in jobs_of(root, plan) if not j.done()]
    done = len(jobs_of(root, plan)) - len(pending)
    say(f"study {root}: {done} jobs done, {len(pending)} to run, {parallel} at a time")
    running: list[_Running] = []
    failed: list[str] = []
    stop = False

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # SIGINT too, explicitly: a study started in the background of a script (``nohup ... &``) inherits SIGINT
    # ignored, and would otherwise shrug off ``kill -INT``; its jobs then also start with SIGINT at its default.
    old_term = signal.signal(signal.SIGTERM, on_term)
    old_int = signal.signal(signal.SIGINT, on_term)
    try:
        while pending or running:
            while pending and len(running) < parallel:
                job = pending.pop(0)
                job.run_dir.parent.mkdir(parents=True, exist_ok=True)
                log = open(job.log, "a")
                if job.state().get("trained") and job.started():
                    running.append(_launch(job, "evaluate", job.eval_cmd(plan), log))
                else:
                    running.append(_launch(job, "train", job.train_cmd(plan), log))
                say(f"  {job.candidate} seed {job.seed}: {running[-1].phase} (log {job.log})")
            time.sleep(0.5)
            for r in list(running):
                rc = r.proc.poll()
                if rc is None:
                    continue
                running.remove(r)
                _finish_leg(r, rc)
                if rc != 0:
                    r.log.close()
                    failed.append(
                        f"{r.job.candidate} seed {r.job.seed}: {r.phase} exited {rc}: {_last_line(r.job.log)}"
                    )
                    say(f"  failed: {failed[-1]}")
                elif r.phase == "train":
                    running.append(_launch(r.job, "evaluate", r.job.eval_cmd(plan), r.log))
                else:
                    r.log.close()
                    say(f"  {r.job.candidate} seed {r.job.seed}: done")
    except KeyboardInterrupt:
        stop = True
        for r in running:
            if r.proc.poll() is None:
                r.proc.send_signal(signal.SIGINT)  # the trainer saves a resumable checkpoint and exits
        for r in running:
            try:
                rc = r.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                r.proc.kill()
                rc = r.proc.wait()
            _finish_leg(r, rc)
            r.log.close()
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)
    if stop:
        say(f"interrupted: progress saved in {root}; run the same command again to resume")
        return 130
    for line in failed:
        say(f"error: {line}")
    return 1 if failed else 0


def _finish_leg(r: _Running, rc: int) -> None:
    if r.phase != "train":
        return
    st = r.job.state()
    st["train_seconds"] = st.get("train_seconds", 0.0) + time.monotonic() - r.started
    st["legs"] = st.get("legs", 0) + 1
    st["trained"] = rc == 0
    r.job.save_state(st)
