"""Training in the app: a thread runs ``Trainer.iterate()`` and writes to a lock-guarded job object.

Streamlit calls are safe only from the script thread, so the training thread
never touches ``st``; the Train page's fragment reads :meth:`TrainJob.view`
every second. Each browser session owns its job (in its session object) and
every job has its own ``out_dir``, so two tabs training at once do not
interfere.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dt.checkpoint.store import CheckpointError
from dt.config import TrainConfig
from dt.data import DatasetError
from dt.train.trainer import Trainer
from dt.validate import check_train_config


@dataclass(frozen=True)
class JobView:
    """A consistent copy of a job's progress, for drawing."""

    status: str  # starting, running, stopping, finished, stopped, failed
    error: str | None
    out_dir: str
    max_steps: int
    step: int
    records: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    dataset: str = ""
    started: float = 0.0

    @property
    def active(self) -> bool:
        return self.status in ("starting", "running", "stopping")

    @property
    def last(self) -> dict[str, Any]:
        return self.records[-1] if self.records else {}

    def latest(self, key: str) -> Any:
        """The newest logged value of ``key`` (an evaluation record has no loss: the one before it does)."""
        return next((r[key] for r in reversed(self.records) if key in r), None)

    def steady_speed(self, window_s: float = 60.0) -> float | None:
        """Steps per second over about the last ``window_s`` seconds of training: the mean of the newest log
        lines' rates weighted by the time each covers, so one slow or fast interval does not swing it."""
        steps = secs = prev_rate = 0.0
        prev_step = None
        for r in reversed(self.records):
            rate = r.get("steps_per_s")
            if not rate or "step" not in r:
                continue
            if prev_step is not None:
                gap = prev_step - r["step"]
                steps, secs = steps + gap, secs + gap / prev_rate
                if secs >= window_s:
                    break
            prev_step, prev_rate = r["step"], rate
        if prev_step is None:
            return None
        return steps / secs if secs > 0 else prev_rate


def _logged_records(path: Path, upto: int) -> list[dict[str, Any]]:
    """The training log's records up to step ``upto`` (a crash may have logged steps the checkpoint lacks)."""
    out = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash
        if isinstance(rec, dict) and "loss" in rec and rec.get("step", upto + 1) <= upto:
            out.append({k: v for k, v in rec.items() if k != "eval"})
    return out


_active_dirs: set[str] = set()  # out_dirs of running jobs, across all sessions of this server
_active_lock = threading.Lock()


class TrainJob:
    """One training run in a background thread.

    Args:
        cfg: The run's config; ``out_dir`` must be this job's own directory.
    """

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self._lock = threading.Lock()
        self._status = "starting"
        self._error: str | None = None
        self._records: list[dict[str, Any]] = []
        self._evals: list[dict[str, Any]] = []
        self._step = 0
        self._dataset = cfg.dataset
        self._trainer: Trainer | None = None
        self._stop_requested = False
        self._started = time.time()
        self._thread = threading.Thread(target=self._run, name=f"dt-train-{Path(cfg.out_dir).name}", daemon=True)

    @property
    def out_dir(self) -> Path:
        return Path(self.cfg.out_dir)

    def start(self) -> TrainJob:
        """Start the thread.

        Raises:
            ConfigError: a setting out of range.
            ValueError: another job of this server is writing to the same out_dir.
        """
        check_train_config(self.cfg)  # a bad setting fails here, in the page, not later in the thread
        key = str(self.out_dir.resolve())
        with _active_lock:
            if key in _active_dirs:
                raise ValueError(f"{self.out_dir}: another training job is writing there")
            _active_dirs.add(key)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the run to save and end after its current step (returns at once)."""
        with self._lock:
            self._stop_requested = True
            if self._status in ("starting", "running"):
                self._status = "stopping"
            trainer = self._trainer
        if trainer is not None:
            trainer.request_stop()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def resume_config(self, max_steps: int) -> TrainConfig:
        """The config that continues this run (same out_dir) up to ``max_steps``."""
        return replace(self.cfg, resume=True, max_steps=max_steps)

    def view(self) -> JobView:
        with self._lock:
            return JobView(
                status=self._status,
                error=self._error,
                out_dir=str(self.cfg.out_dir),
                max_steps=self.cfg.max_steps,
                step=self._step,
                records=list(self._records),
                evals=list(self._evals),
                dataset=self._dataset,
                started=self._started,
            )

    def _run(self) -> None:
        try:
            self._train()
        finally:
            with _active_lock:
                _active_dirs.discard(str(self.out_dir.resolve()))

    def _train(self) -> None:
        try:
            trainer = Trainer(self.cfg)  # loads the dataset: slow, so it happens here too
            with self._lock:
                self._trainer = trainer
                self._step = trainer.step
                self._dataset = trainer.ds.name
                self._evals = list(trainer.eval_history)
                # A resumed run's chart continues from its logged history, not from the resume step.
                self._records = _logged_records(self.out_dir / "metrics.jsonl", trainer.step) if self.cfg.resume else []
                if self._stop_requested:
                    trainer.request_stop()
                else:
                    self._status = "running"
            for rec in trainer.iterate():
                with self._lock:
                    self._records.append({k: v for k, v in rec.items() if k != "eval"})
                    self._step = rec["step"]
                    if "eval" in rec:
                        self._evals.append(rec["eval"])
            with self._lock:
                self._step = trainer.step
                self._status = "stopped" if self._stop_requested else "finished"
        except (DatasetError, CheckpointError, ValueError, KeyError, FileNotFoundError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            with self._lock:
                self._status, self._error = "failed", str(msg).splitlines()[0]
        except Exception as e:  # anything else still ends the job visibly, not silently
            with self._lock:
                self._status, self._error = "failed", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


# The generated file's size per transition (observations, actions, rewards, flags, qpos/qvel, log-probs in the
# D4RL layout): a property of the format, not of the machine. Times are measured here, at run time.
GEN_BYTES_PER_TRANSITION = 206
SPEED_FILE = ".generation-speed.json"  # under the runs folder: the app's last generation, transitions and seconds


def generation_speed() -> tuple[float, str] | None:
    """(transitions per second, where it was measured) of the newest generation on this machine: the app's own
    last job (start-up included) or, failing that, a generated dataset's own record (its steps and seconds)."""
    from app import paths
    from dt.data.locate import generated_dir

    try:
        m = json.loads((paths.runs_dir() / SPEED_FILE).read_text())
        n, secs = int(m["transitions"]), float(m["seconds"])
        return n / secs, f"the last generation here ({n:,} in {secs:.0f} s)"
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        pass
    from dt.data.io import read_d4rl_metadata

    newest: tuple[float, float, int, str] | None = None
    for f in generated_dir().glob("*.hdf5") if generated_dir().is_dir() else ():
        try:
            meta = read_d4rl_metadata(f)
            steps, secs = int(meta["steps"]), float(meta["seconds"])
        except (DatasetError, OSError, ValueError, KeyError, TypeError):
            continue
        if secs > 0 and (newest is None or f.stat().st_mtime > newest[0]):
            newest = (f.stat().st_mtime, secs, steps, f.name)
    if newest is None:
        return None
    _, secs, steps, name = newest
    return steps / secs, f"{name} ({steps:,} transitions in {secs:.0f} s, start-up not counted)"


def generation_estimate(transitions: int) -> tuple[float | None, float]:
    """(seconds or None where nothing was measured yet, megabytes) for generating ``transitions`` here."""
    speed = generation_speed()
    return (transitions / speed[0] if speed else None), transitions * GEN_BYTES_PER_TRANSITION / 1e6


def _record_speed(transitions: int, seconds: float) -> None:
    """Keep this machine's latest generation speed for the next estimate (best effort: a hint, not data)."""
    from app import paths
    from dt.atomic import write_atomic

    try:
        paths.runs_dir().mkdir(parents=True, exist_ok=True)
        write_atomic(paths.runs_dir() / SPEED_FILE, json.dumps({"transitions": transitions, "seconds": seconds}))
    except OSError:
        pass


def progress_fraction(line: str) -> float | None:
    """The done fraction in a tqdm line such as ``12%|#   | 6144/50000 [00:05<00:40, 1100step/s]``."""
    found = re.search(r"(\d+)/(\d+) \[", line)
    if not found or int(found.group(2)) == 0:
        return None
    return min(1.0, int(found.group(1)) / int(found.group(2)))


@dataclass(frozen=True)
class GenView:
    """A consistent copy of a generation job's progress."""

    status: str  # running, finished, cancelled, failed
    name: str
    transitions: int
    elapsed_s: float
    line: str  # the generator's last progress line
    error: str | None

    @property
    def active(self) -> bool:
        return self.status == "running"

    @property
    def fraction(self) -> float | None:
        """The generator's own done fraction (its progress line), 1 when finished; None before it reports."""
        return 1.0 if self.status == "finished" else progress_fraction(self.line)

    @property
    def left_s(self) -> float | None:
        """Seconds left at the pace measured so far in this run (None until 2% is done)."""
        f = self.fraction
        return None if f is None or f < 0.02 else self.elapsed_s * (1 - f) / f


class GenerateJob:
    """``python -m dt data generate NAME --steps N`` (dt.behaviour.generate.generate_dataset) in a child process.

    A process rather than a thread, so that Cancel can stop it at once; the generator writes its file
    atomically, so a cancelled run leaves no half-written dataset. Its progress lines (tqdm, on stderr)
    are read by a thread and shown as they come.
    """

    def __init__(self, name: str, transitions: int, seed: int = 0) -> None:
        import subprocess
        import sys

        self.name, self.transitions = name, transitions
        self._lock = threading.Lock()
        self._line = ""
        self._status = "running"
        self._error: str | None = None
        self._started = time.time()
        self._ended: float | None = None
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "dt", "data", "generate", name, "--steps", str(transitions), "--seed", str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._reader = threading.Thread(target=self._read, name=f"dt-generate-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buf, tail = b"", []
        assert self._proc.stdout is not None
        while chunk := self._proc.stdout.read1(4096):
            buf += chunk
            *parts, buf = buf.replace(b"\r", b"\n").split(b"\n")
            lines = [p.decode(errors="replace").strip() for p in parts if p.strip()]
            if lines:
                tail = (tail + lines)[-5:]
                with self._lock:
                    self._line = lines[-1]
        code = self._proc.wait()
        with self._lock:
            self._ended = time.time()
            if self._status == "cancelled":
                return
            if code == 0:
                self._status = "finished"
                _record_speed(self.transitions, self._ended - self._started)
            else:
                self._status = "failed"
                errors = [t for t in tail if "Error" in t] or tail or [f"exit code {code}"]
                self._error = errors[-1]

    def cancel(self) -> None:
        """Stop the generator (its atomic write means nothing partial is left)."""
        with self._lock:
            if self._status != "running":
                return
            self._status = "cancelled"
        self._proc.terminate()

    def join(self, timeout: float | None = None) -> bool:
        self._reader.join(timeout)
        return not self._reader.is_alive()

    def view(self) -> GenView:
        with self._lock:
            end = self._ended or time.time()
            return GenView(
                status=self._status,
                name=self.name,
                transitions=self.transitions,
                elapsed_s=end - self._started,
                line=self._line,
                error=self._error,
            )
