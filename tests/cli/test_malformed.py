"""A corpus of malformed inputs, made here: each gives one clear line on stderr (or in the page), never a traceback,
and writes nothing.

The second corpus (bounds, data values, output paths, declared sizes) covers counts and sizes past what the machine
can hold, values a dataset may not carry (rewards, actions outside the action space, flags that are not 0/1),
numbers that do not fit a float, output paths found bad only after the work, and checkpoint sizes that would
build a model the weights file does not hold.

Three entry points: the CLI in-process (``dt.cli.commands.main``, every case), the CLI as a real process (one case of
each class) and the app's upload path (every malformed checkpoint, zipped, plus zips that are malformed as
zips). A case names the input, the command line it is given to, and a piece of the message it must produce
(the file or flag, and the fault).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from dt.cli.commands import main
from tests.uploads import _corrupt_member, _good_files, _zip

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Case:
    """One malformed input: ``make(tmp, base)`` builds it and returns the CLI arguments that read it."""

    id: str
    make: Callable[[Path, dict], list[str]]
    expect: str


# --------------------------------------------------------------------------- #
# Dataset files
# --------------------------------------------------------------------------- #


def _h5(tmp: Path, arrays: dict[str, np.ndarray], name: str = "hopper_random-v2.hdf5", **meta) -> Path:
    path = tmp / name
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
        for k, v in meta.items():
            f.create_dataset(f"metadata/{k}", data=v)
    return path


def _arrays(base: dict, **change) -> dict[str, np.ndarray]:
    out = {k: base[k][:300] for k in ("observations", "actions", "rewards", "terminals", "timeouts")}
    for k, v in change.items():
        if v is None:
            del out[k]
        else:
            out[k] = v(out[k]) if callable(v) else v
    return out


def _stats(path: Path) -> list[str]:
    return ["data", "stats", str(path)]


def _ds(change: dict, **meta) -> Callable[[Path, dict], list[str]]:
    return lambda tmp, base: _stats(_h5(tmp, _arrays(base["arrays"], **change), **meta))


def _afile(tmp: Path) -> Path:
    (tmp / "afile").write_text("x")
    return tmp / "afile"


def _hash_attr(tmp: Path, base: dict) -> Path:
    """A metadata attribute that is an array where a string belongs ("truth value of an array ... is ambiguous")."""
    path = _h5(tmp, _arrays(base["arrays"]))
    with h5py.File(path, "r+") as f:
        f.require_group("metadata").attrs["content_sha256"] = np.array([1, 2])
    return path


def _raw(data: bytes) -> Callable[[Path, dict], list[str]]:
    def make(tmp: Path, base: dict) -> list[str]:
        (tmp / "x.hdf5").write_bytes(data)
        return _stats(tmp / "x.hdf5")

    return make


def _truncated(keep: float) -> Callable[[Path, dict], list[str]]:
    def make(tmp: Path, base: dict) -> list[str]:
        data = base["d4rl"].read_bytes()
        (tmp / "cut.hdf5").write_bytes(data[: int(len(data) * keep)])
        return _stats(tmp / "cut.hdf5")

    return make


def _nan_at(value: float) -> Callable[[np.ndarray], np.ndarray]:
    def f(a: np.ndarray) -> np.ndarray:
        a = a.copy()
        a.flat[7] = value
        return a

    return f


def _group_obs(tmp: Path, base: dict) -> list[str]:
    path = _h5(tmp, _arrays(base["arrays"], observations=None))
    with h5py.File(path, "a") as f:
        f.create_group("observations")
    return _stats(path)


def _replace_obs(how: str) -> Callable[[Path, dict], list[str]]:
    """``observations`` as a link to nothing, declaring 10**12 rows (chunked: the file stays a few KB), or an
    empty dataspace (no shape at all)."""

    def make(tmp: Path, base: dict) -> list[str]:
        path = _h5(tmp, _arrays(base["arrays"], observations=None))
        with h5py.File(path, "a") as f:
            if how == "dangling":
                f["observations"] = h5py.SoftLink("/nothing")
            elif how == "huge":
                f.create_dataset("observations", shape=(10**12, 11), dtype=np.float32, chunks=(1024, 11))
            else:
                f["observations"] = h5py.Empty("f4")
        return _stats(path)

    return make


def _minari(tmp: Path, files: dict[str, str | bytes]) -> list[str]:
    root = tmp / "mujoco" / "hopper" / "odd-v0"
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content.encode() if isinstance(content, str) else content)
    return _stats(root)


def _minari_short_obs(tmp: Path, base: dict, drop: str = "") -> list[str]:
    root = tmp / "m"
    (root / "data").mkdir(parents=True)
    a = base["arrays"]
    with h5py.File(root / "data" / "main_data.hdf5", "w") as f:
        g = f.create_group("episode_0")
        g["observations"], g["actions"], g["rewards"] = a["observations"][:10], a["actions"][:10], a["rewards"][:10]
        g["terminations"], g["truncations"] = np.zeros(10, bool), np.zeros(10, bool)
        if drop:
            del g[drop]
    return _stats(root)


def _wide_for_hopper(tmp: Path, base: dict) -> list[str]:
    arrays = _arrays(base["arrays"], observations=np.zeros((300, 17), np.float32))
    path = _h5(tmp, arrays, name="hopper_medium-v2.hdf5")
    return ["train", "--dataset", str(path), "--out-dir", str(tmp / "run"), "--max-steps", "2"]


DATASET_CASES = [
    Case("ds-missing", lambda tmp, base: _stats(tmp / "nope.hdf5"), "nope.hdf5: file not found"),
    Case("ds-hash-array", lambda tmp, base: _stats(_hash_attr(tmp, base)), "metadata/content_sha256 must be a hex"),
    Case("ds-empty-file", _raw(b""), "x.hdf5: not a readable hdf5 file"),
    Case("ds-text", _raw(b"observations,actions\n1,2\n"), "x.hdf5: not a readable hdf5 file"),
    Case("ds-pickle", _raw(pickle.dumps({"observations": [1, 2, 3]})), "x.hdf5: not a readable hdf5 file"),
    Case("ds-truncated-half", _truncated(0.5), "cut.hdf5: "),
    Case("ds-truncated-header", _truncated(0.002), "cut.hdf5: not a readable hdf5 file"),
    Case("ds-no-observations", _ds({"observations": None}), "missing observations"),
    Case("ds-no-actions", _ds({"actions": None}), "missing actions"),
    Case("ds-no-rewards", _ds({"rewards": None}), "missing rewards"),
    Case("ds-obs-1d", _ds({"observations": lambda a: a[:, 0]}), "must be 2-D"),
    Case("ds-obs-3d", _ds({"observations": lambda a: a[:, :, None]}), "must be 2-D"),
    Case("ds-obs-no-columns", _ds({"observations": np.zeros((300, 0), np.float32)}), "no columns"),
    Case("ds-actions-short", _ds({"actions": lambda a: a[:-1]}), "actions has 299 rows but observations has 300"),
    Case("ds-rewards-2col", _ds({"rewards": lambda a: np.stack([a, a], 1)}), "rewards must be 1-D"),
    Case("ds-terminals-short", _ds({"terminals": lambda a: a[:10]}), "terminals has 10 rows"),
    Case("ds-terminals-2col", _ds({"terminals": lambda a: np.stack([a, a], 1)}), "one flag per transition"),
    Case("ds-obs-strings", _ds({"observations": lambda a: a.astype("S8")}), "observations has dtype |S8"),
    Case("ds-obs-complex", _ds({"observations": lambda a: a.astype(np.complex64)}), "expected numbers"),
    Case("ds-rewards-scalar", _ds({"rewards": np.float32(1.0)}), "rewards is a scalar"),
    Case("ds-obs-nan", _ds({"observations": _nan_at(np.nan)}), "observations holds NaN or inf"),
    Case("ds-rewards-inf", _ds({"rewards": _nan_at(np.inf)}), "rewards holds NaN or inf"),
    Case("ds-actions-neginf", _ds({"actions": _nan_at(-np.inf)}), "actions holds NaN or inf"),
    Case(
        "ds-zero-rows",
        _ds({k: (lambda a: a[:0]) for k in ("observations", "actions", "rewards", "terminals", "timeouts")}),
        "holds no transitions",
    ),
    Case("ds-obs-group", _group_obs, "'observations' is a group"),
    Case("ds-obs-dangling", _replace_obs("dangling"), "'observations' is a link to nothing"),  # "is a group"
    # was "out of memory ... lower --batch-size, --episodes": flags `data stats` does not have
    Case("ds-obs-empty-dataspace", _replace_obs("empty"), "observations has dtype object, expected numbers"),
    Case("ds-obs-declares-huge", _replace_obs("huge"), "'observations' declares (1000000000000, 11) (40,978 GiB)"),
    Case("ds-lying-hash", _ds({}, content_sha256="0" * 64), "content hash does not match its metadata"),
    Case("ds-minari-no-data", lambda tmp, base: _minari(tmp, {"notes.txt": "x"}), "main_data.hdf5: file not found"),
    Case(
        "ds-minari-arrow",
        lambda tmp, base: _minari(
            tmp, {"data/metadata.json": json.dumps({"data_format": "arrow", "dataset_id": "mujoco/hopper/odd-v0"})}
        ),
        "arrow format; this reader takes hdf5: convert it with `python -m dt data import-minari mujoco/hopper/odd-v0`",
    ),
    Case("ds-minari-bad-json", lambda tmp, base: _minari(tmp, {"data/metadata.json": "{oops"}), "invalid JSON"),
    Case("ds-minari-json-list", lambda tmp, base: _minari(tmp, {"data/metadata.json": "[1]"}), "expected a JSON"),
    Case("ds-minari-obs-count", _minari_short_obs, "episode_0 has 10 observations for 10 actions (expected 11)"),
    Case(
        "ds-minari-no-terminations",
        lambda tmp, base: _minari_short_obs(tmp, base, drop="terminations"),
        "'terminations' is missing",
    ),
    Case(
        "ds-minari-unknown-id",
        lambda tmp, base: ["train", "--dataset", "mujoco/hopper/heldout-v0", "--out-dir", str(tmp / "r")],
        "mujoco/hopper/heldout-v0: no such file, and no Minari dataset with this id",
    ),
    Case("ds-17-columns-for-hopper", _wide_for_hopper, "state/action size 17/3 does not fit hopper"),
]


# --------------------------------------------------------------------------- #
# Checkpoints
# --------------------------------------------------------------------------- #


def _ck(mutate: Callable[[Path], None]) -> Callable[[Path, dict], list[str]]:
    def make(tmp: Path, base: dict) -> list[str]:
        d = tmp / "ck"
        shutil.copytree(base["checkpoint"], d)
        mutate(d)
        return ["evaluate", "--checkpoint", str(d), "--episodes", "1", "--max-steps", "5", "--quiet"]

    return make


def _meta(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def mutate(d: Path) -> None:
        meta = json.loads((d / "checkpoint.json").read_text())
        new = change(meta)
        (d / "checkpoint.json").write_text(json.dumps(meta if new is None else new))

    return mutate


def _set(path: str, value) -> Callable[[Path], None]:
    """Set ``a.b`` in checkpoint.json."""

    def change(meta: dict) -> None:
        *head, last = path.split(".")
        node = meta
        for k in head:
            node = node[k]
        node[last] = value

    return _meta(change)


def _drop(key: str) -> Callable[[Path], None]:
    return _meta(lambda m: m.pop(key))


def _write(name: str, data: bytes | Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def mutate(d: Path) -> None:
        f = d / name
        f.write_bytes(data(f.read_bytes()) if callable(data) else data)

    return mutate


def _torch_pickle(d: Path) -> None:
    import torch

    torch.save({"x": torch.zeros(3)}, d / "model.safetensors")


def _nan_weights(d: Path) -> None:
    from safetensors.torch import load_file, save_file

    t = load_file(d / "model.safetensors")
    k = next(k for k, v in t.items() if v.is_floating_point())
    t[k] = t[k].clone().fill_(float("nan"))
    save_file(t, d / "model.safetensors")


def _as_hf_without_norm(d: Path) -> None:
    (d / "checkpoint.json").unlink()


def _run_dir(tmp: Path, base: dict) -> list[str]:
    shutil.copytree(base["checkpoint"], tmp / "run" / "checkpoint")
    return ["evaluate", "--checkpoint", str(tmp / "run")]


def _empty_dir(tmp: Path, base: dict) -> list[str]:
    (tmp / "empty").mkdir()
    return ["evaluate", "--checkpoint", str(tmp / "empty")]


def _file_as_ck(tmp: Path, base: dict) -> list[str]:
    return ["evaluate", "--checkpoint", str(base["checkpoint"] / "checkpoint.json")]


_CK_MUTATIONS = [
    Case("ck-json-list", _meta(lambda m: [m]), "checkpoint.json: expected a JSON object, got list"),
    Case("ck-json-truncated", _write("checkpoint.json", lambda b: b[: len(b) // 2]), "checkpoint.json: invalid JSON"),
    Case("ck-json-binary", _write("checkpoint.json", b"\xff\xfe\x00garbage"), "checkpoint.json: invalid JSON"),
    Case("ck-context-len-text", _set("model.context_len", "twenty"), "model.context_len must be an integer >= 1"),
    Case("ck-n-head-0", _set("model.n_head", 0), "model.n_head must be an integer >= 1, got 0"),
    Case("ck-n-layer-negative", _set("model.n_layer", -1), "model.n_layer must be an integer >= 1, got -1"),
    Case("ck-embed-float", _set("model.embed_dim", 1.5), "model.embed_dim must be an integer >= 1, got 1.5"),
    Case("ck-embed-mismatch", _set("model.embed_dim", 64), "weights do not fit the config"),
    Case("ck-model-missing", _drop("model"), "'model' must be an object"),
    Case("ck-model-type", _set("model.model_type", "transformer"), "model.model_type must be one of dt, radt, bc"),
    Case("ck-activation", _set("model.activation", "wiggle"), "model.activation must be one of"),
    Case("ck-dropout-2", _set("model.dropout", 2), "model.dropout must be a finite number in [0, 1)"),
    Case("ck-tanh-text", _set("model.action_tanh", "yes"), "model.action_tanh must be true or false"),
    Case("ck-state-mean-short", _set("state_mean", [0.0] * 5), "state_mean must hold 11 numbers, got 5"),
    Case("ck-state-mean-text", _set("state_mean", ["x"] * 11), "state_mean must be a list of finite numbers"),
    Case("ck-state-mean-nan", _set("state_mean", [float("nan")] * 11), "state_mean must be a list of finite numbers"),
    Case("ck-state-std-zero", _set("state_std", [0.0] * 11), "state_std must hold only numbers >= 1e-06, got 0"),
    Case("ck-scale-text", _set("scale", "big"), "scale must be a finite number in [0.01, 1000000000], got 'big'"),
    Case("ck-scale-negative", _set("scale", -1), "scale must be a finite number in [0.01, "),
    Case("ck-env-number", _set("env", 5), "'env' must be an env name"),
    Case("ck-env-unknown", _set("env", "ant"), "unknown env 'ant'"),
    Case("ck-format-99", _set("format_version", 99), "format version 99 is newer than this code reads"),
    Case("ck-format-text", _set("format_version", "1"), "format_version must be an integer"),
    Case("ck-max-ep-len-0", _set("max_ep_len", 0), "max_ep_len must be an integer >= 1, got 0"),
    Case("ck-step-negative", _set("step", -3), "step must be an integer >= 0, got -3"),
    Case("ck-eval-text", _set("eval", "good"), "'eval' must be a list of results"),
    Case("ck-dataset-text", _set("dataset", "hopper"), "'dataset' must be an object"),
    Case("ck-weights-pickle", _torch_pickle, "model.safetensors: unreadable safetensors file"),
    Case("ck-weights-truncated", _write("model.safetensors", lambda b: b[: len(b) // 3]), "unreadable safetensors"),
    Case("ck-weights-garbage-header", _write("model.safetensors", b"\xff" * 64), "unreadable safetensors file"),
    Case("ck-weights-missing", lambda d: (d / "model.safetensors").unlink(), "model.safetensors: file not found"),
    Case("ck-weights-nan", _nan_weights, "weights hold NaN or inf"),
    Case("ck-hf-without-normalization", _as_hf_without_norm, "needs normalization.json"),
]
# Mutations of a copy of a good checkpoint, then paths that are not checkpoint directories.
CHECKPOINT_CASES = [Case(c.id, _ck(c.make), c.expect) for c in _CK_MUTATIONS] + [
    Case("ck-run-dir", _run_dir, "a run directory, not a checkpoint; pass"),
    Case("ck-empty-dir", _empty_dir, "empty: no checkpoint.json"),
    Case("ck-file", _file_as_ck, "checkpoint.json: not a checkpoint directory; pass the checkpoint directory"),
]


# --------------------------------------------------------------------------- #
# Flags
# --------------------------------------------------------------------------- #


def _train(*flags: str) -> Callable[[Path, dict], list[str]]:
    return lambda tmp, base: ["train", "--dataset", str(base["d4rl"]), "--out-dir", str(tmp / "run"), *flags]


def _evaluate(*flags: str) -> Callable[[Path, dict], list[str]]:
    return lambda tmp, base: ["evaluate", "--checkpoint", str(base["checkpoint"]), "--quiet", *flags]


def _json_over(name: str) -> Callable[[Path, dict], list[str]]:
    """``evaluate --json`` onto a file that is not an earlier result: the checkpoint's own weights, or a notes file."""

    def make(tmp: Path, base: dict) -> list[str]:
        if name == "weights":
            target = Path(base["checkpoint"]) / "model.safetensors"
        else:
            target = tmp / "notes.json"
            target.write_text('{"mine": 1}\n')
        return ["evaluate", "--checkpoint", str(base["checkpoint"]), "--quiet", "--json", str(target)]

    return make


def _out_dir_file(tmp: Path, base: dict) -> list[str]:
    (tmp / "afile").write_text("x")
    return ["train", "--dataset", str(base["d4rl"]), "--out-dir", str(tmp / "afile")]


def _out_dir_below_file(tmp: Path, base: dict) -> list[str]:
    (tmp / "afile").write_text("x")
    return ["train", "--dataset", str(base["d4rl"]), "--out-dir", str(tmp / "afile" / "run")]


def _json_dir(tmp: Path, base: dict) -> list[str]:
    return _evaluate("--json", str(tmp))(tmp, base)


FLAG_CASES = [
    Case("flag-batch-size-0", _train("--batch-size", "0"), "--batch-size: must be an integer >= 1, got 0"),
    Case("flag-save-every-0", _train("--save-every", "0"), "--save-every: must be an integer >= 1, got 0"),
    Case("flag-log-every-0", _train("--log-every", "0"), "--log-every: must be an integer >= 1, got 0"),
    Case("flag-context-len-0", _train("--context-len", "0"), "--context-len: must be an integer >= 1, got 0"),
    Case("flag-context-len-neg", _train("--context-len", "-3"), "--context-len: must be an integer >= 1, got -3"),
    Case("flag-max-steps-0", _train("--max-steps", "0"), "--max-steps: must be an integer >= 1"),
    Case("flag-warmup-neg", _train("--warmup-steps", "-1"), "--warmup-steps: must be an integer >= 0"),
    Case("flag-lr-0", _train("--lr", "0"), "--lr: must be a finite number in (0, 1]"),
    Case("flag-lr-nan", _train("--lr", "nan"), "--lr: must be a finite number"),
    Case("flag-grad-clip-inf", _train("--grad-clip", "inf"), "--grad-clip: must be a finite number"),
    Case("flag-dropout-1.5", _train("--dropout", "1.5"), "--dropout: must be a finite number in [0, 1)"),
    Case("flag-pct-traj-0", _train("--pct-traj", "0"), "--pct-traj: must be a finite number in (0, 1]"),
    # Choices are refused while parsing, before the dataset is read.
    Case("flag-gym-version", _train("--gym-version", "v9"), "argument --gym-version: invalid choice: 'v9'"),
    Case("flag-eval-episodes-0", _train("--eval-episodes", "0"), "--eval-episodes: must be an integer >= 1"),
    Case("flag-eval-targets-nan", _train("--eval-targets", "nan"), "--eval-targets: must be a list of finite"),
    # A finite but huge target turned the actions to NaN: the run saved, then could not read its own evaluation.
    Case("flag-eval-targets-huge", _train("--eval-targets", "1e30"), "--eval-targets: must hold only numbers within"),
    Case("flag-json-into-checkpoint", _json_over("weights"), "is inside the checkpoint"),
    Case("flag-json-over-other-file", _json_over("notes"), "exists and is not an evaluation's results; pick another"),
    Case("flag-evaluate-targets-huge", _evaluate("--targets", "3600", "1e7"), "--targets: must hold only numbers"),
    Case("flag-n-head-3", _train("--n-head", "3"), "--embed-dim 128 must be divisible by --n-head 3"),
    Case("flag-model-type", _train("--model-type", "gpt"), "argument --model-type: invalid choice: 'gpt'"),
    Case("flag-activation", _train("--activation", "wiggle"), "argument --activation: invalid choice: 'wiggle'"),
    Case("flag-evaluate-gym-version", _evaluate("--gym-version", "v3"), "argument --gym-version: invalid choice"),
    Case("flag-unknown", _train("--learning-rate", "1"), "unrecognized arguments: --learning-rate 1"),
    Case("flag-device", _train("--device", "tpu"), "--device: must be auto, cpu, cuda or cuda:N"),
    Case("flag-device-number", _train("--device", "cuda:x"), "--device: must be auto, cpu, cuda or cuda:N"),
    Case("flag-evaluate-device", _evaluate("--device", "cuda:-1"), "--device: must be auto, cpu, cuda or cuda:N"),
    Case(
        "flag-data-card-out-file",
        lambda tmp, base: ["data", "card", str(base["d4rl"]), "--out", str(_afile(tmp))],
        "afile is a file, not a directory; pick another path",
    ),
    Case(
        "flag-download-dir-file",
        lambda tmp, base: ["data", "download", "hopper-medium", "--dir", str(_afile(tmp))],
        "afile is a file, not a directory; pick another path",
    ),
    Case("flag-results-dir", lambda tmp, base: ["results", "--dir", str(tmp / "nope")], "is not a directory"),
    Case(
        "flag-results-plot",
        lambda tmp, base: ["results", "--dir", str(tmp), "--plot", str(tmp)],
        "name a .png file to write",
    ),
    Case("flag-bench-device", lambda tmp, base: ["bench", "--device", "tpu"], "--device: must be cpu, cuda or cuda:N"),
    Case("flag-bench-batch-0", lambda tmp, base: ["bench", "--batch-sizes", "64", "0"], "--batch-sizes: each must"),
    Case("flag-bench-scaling", lambda tmp, base: ["bench", "--scaling-steps", "0"], "--scaling-steps: must be an"),
    Case("flag-threads-neg", _train("--num-threads", "-1"), "--num-threads: must be an integer >= 0"),
    Case("flag-env-unknown", _train("--env", "ant"), "--env: unknown env 'ant'"),
    Case("flag-out-dir-file", _out_dir_file, "--out-dir: "),
    Case("flag-out-dir-below-file", _out_dir_below_file, "afile is a file, not a directory"),
    Case("flag-eval-episodes-0-evaluate", _evaluate("--episodes", "0"), "--episodes: must be an integer >= 1"),
    Case("flag-max-steps-neg", _evaluate("--max-steps", "-5"), "--max-steps: must be an integer >= 0, got -5"),
    Case("flag-targets-inf", _evaluate("--targets", "inf"), "--targets: must be a list of finite numbers"),
    Case("flag-json-dir", _json_dir, "--json: "),
    Case("flag-evaluate-env", _evaluate("--env", "ant"), "--env: unknown env 'ant'; known: hopper"),
    # a line break in a path is written as \\n: the one line names the whole path (it printed "error: a")
    # an empty path or name fell back to the default, the current folder or data/main_data.hdf5 without a word
    Case("flag-results-dir-empty", lambda tmp, base: ["results", "--dir", ""], "--dir: empty; give a value"),
    Case("flag-stats-empty", lambda tmp, base: ["data", "stats", " "], "dataset: empty; give a value"),
    Case(
        "flag-study-out-empty",
        lambda tmp, base: ["study", str(ROOT / "docs/studies/bc10-medium-seeds.json"), "--out-dir", ""],
        "--out-dir: empty; give a value, or leave the flag out",
    ),
    Case("flag-schedule-empty", _evaluate("--schedule", ""), "--schedule: empty; give a value"),  # was ignored
    Case("flag-checkpoint-newline", lambda tmp, base: ["evaluate", "--checkpoint", f"{tmp}/a\nb"], "a\\nb: "),
    Case(
        "flag-generate-steps-0",
        lambda tmp, base: ["data", "generate", "hopper-random", "--steps", "0"],
        "--steps: must be an integer >= 1, got 0",
    ),
    Case(
        "flag-generate-envs-0",
        lambda tmp, base: ["data", "generate", "hopper-random", "--num-envs", "0"],
        "--num-envs: must be an integer >= 1, got 0",
    ),
]


# --------------------------------------------------------------------------- #
# Second corpus: bounds, data values, output paths, declared sizes (each refused before any work; nothing written)
# --------------------------------------------------------------------------- #


def _generate(*flags: str) -> Callable[[Path, dict], list[str]]:
    return lambda tmp, base: ["data", "generate", "hopper-random", "--dir", str(tmp / "gen"), *flags]


BOUND_FLAG_CASES = [
    Case("train-seed-negative", _train("--seed", "-1"), "--seed: must be an integer >= 0, got -1"),
    Case("train-seed-huge", _train("--seed", "9" * 40), "--seed: must be an integer <= 9223372036854775807"),
    Case("train-max-steps-huge", _train("--max-steps", str(10**12)), "--max-steps: must be an integer <= "),
    Case("train-warmup-huge", _train("--warmup-steps", str(10**12)), "--warmup-steps: must be an integer <= "),
    Case("train-n-layer-huge", _train("--n-layer", "1000"), "--n-layer: must be an integer <= 48"),
    Case("train-n-head-huge", _train("--n-head", "1000"), "--n-head: must be an integer <= 64"),
    Case("train-n-inner-huge", _train("--n-inner", str(10**6)), "--n-inner: must be an integer <= 16384"),
    Case("train-eval-episodes-huge", _train("--eval-episodes", str(10**8)), "--eval-episodes: must be an integer <="),
    Case("train-eval-targets-neg-inf", _train("--eval-targets=-inf"), "--eval-targets: must be a list of finite"),
    Case("train-eval-targets-overflow", _train("--eval-targets", "1e400"), "--eval-targets: must be a list of finite"),
    Case(
        "train-eval-targets-many",
        _train("--eval-targets", *["1"] * 101),
        "--eval-targets: must hold at most 100 numbers, got 101",
    ),
    Case("train-scale-tiny", _train("--scale", "1e-300"), "is the scale 1e-300 too small?"),
    Case("train-scale-nan", _train("--scale", "nan"), "--scale: must be a finite number"),
    Case("train-scale-negative", _train("--scale", "-5"), "--scale: "),
    Case("train-weight-decay-negative", _train("--weight-decay", "-1"), "--weight-decay: "),
    Case("train-ema-one", _train("--ema", "1"), "--ema: "),
    Case("train-lr-floor-two", _train("--lr-floor", "2", "--lr-schedule", "cosine"), "--lr-floor: "),
    Case("train-batch-text", _train("--batch-size", "1e3"), "--batch-size: invalid int value: '1e3'"),
    Case(
        "train-memory",
        _train("--batch-size", "65536", "--context-len", "1000", "--embed-dim", "4096"),
        "more memory than this machine has",
    ),
    Case("train-out-dir-nul", lambda tmp, base: _train()(tmp, base)[:4] + [str(tmp / "a\0b")], "--out-dir: "),
    Case(  # made the folder, trained, then failed reading its own safetensors file back
        "train-out-dir-not-utf8",
        lambda tmp, base: _train()(tmp, base)[:4] + [str(tmp / os.fsdecode(b"run-\xff"))],
        "holds bytes that are not UTF-8",
    ),
    Case(
        "train-out-dir-long-name", lambda tmp, base: _train()(tmp, base)[:4] + [str(tmp / ("x" * 300))], "--out-dir: "
    ),
    Case("evaluate-targets-neg-inf", _evaluate("--targets=-inf"), "--targets: must be a list of finite numbers"),
    Case("evaluate-targets-overflow", _evaluate("--targets", "1e400"), "--targets: must be a list of finite"),
    Case(
        "evaluate-targets-many",
        _evaluate("--targets", *["1"] * 101),
        "--targets: must hold at most 100 numbers, got 101",
    ),
    Case("evaluate-episodes-huge", _evaluate("--episodes", str(10**8)), "--episodes: must be an integer <= 10000"),
    Case("evaluate-seed-huge", _evaluate("--seed", str(2**64)), "--seed: must be an integer <= "),
    Case("evaluate-max-steps-huge", _evaluate("--max-steps", str(10**12)), "--max-steps: must be an integer <= "),
    Case("evaluate-threads-huge", _evaluate("--num-threads", "100000"), "--num-threads: must be an integer <= 1024"),
    Case("evaluate-schedule-unreadable", _evaluate("--schedule", "fast"), "--schedule: cannot read 'fast' as the"),
    Case("evaluate-schedule-no-switch", _evaluate("--schedule", "1000"), "--schedule: the schedule has no switch"),
    Case("evaluate-schedule-past-end", _evaluate("--schedule", "1000; 5000: 3000"), "is beyond the episode"),
    Case("evaluate-schedule-and-targets", _evaluate("--schedule", "1000; 9: 3", "--targets", "5"), "drop --targets"),
    Case("evaluate-alignment-huge", _evaluate("--alignment", "1000"), "--alignment: must be an integer <= 100"),
    Case(
        "evaluate-json-missing-folder",
        lambda tmp, base: _evaluate("--json", str(tmp / "no" / "r.json"))(tmp, base),
        "no/r.json: the folder",
    ),
    Case("generate-episodes-huge", _generate("--episodes", str(10**8)), "--episodes: must be an integer <= "),
    Case("generate-steps-huge", _generate("--steps", str(10**12)), "--steps: must be an integer <= "),
    Case("generate-envs-huge", _generate("--num-envs", "100000"), "--num-envs: must be an integer <= "),
    Case("generate-seed-huge", _generate("--seed", str(2**64)), "--seed: must be an integer <= "),
    Case("generate-unknown", lambda tmp, base: ["data", "generate", "hopper-legendary"], "hopper-legendary"),
]


def _h5_values(tmp: Path, base: dict, **change) -> Path:
    arrays = {
        k: base["arrays"][k][:300].copy() for k in ("observations", "actions", "rewards", "terminals", "timeouts")
    }
    for k, f in change.items():
        arrays[k] = arrays[k].astype(np.float64)  # a flag array may then hold 2 or 0.5
        f(arrays[k])
    path = tmp / "hopper_medium-v2.hdf5"
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
    return path


def _data(expect: str, **change) -> Case:
    def make(tmp: Path, base: dict) -> list[str]:
        return [
            "train",
            "--dataset",
            str(_h5_values(tmp, base, **change)),
            "--out-dir",
            str(tmp / "run"),
            "--max-steps",
            "2",
        ]

    return make, expect


def _at(value: float, index: int = 7) -> Callable[[np.ndarray], None]:
    def f(a: np.ndarray) -> None:
        a.flat[index] = value

    return f


VALUE_CASES = [
    Case(f"data-{cid}", *_data(expect, **change))
    for cid, expect, change in [
        ("reward-huge", "rewards reach 3e+38, not a per-step reward", {"rewards": _at(3e38)}),
        ("reward-huge-negative", "rewards reach -1e+09, not a per-step reward", {"rewards": _at(-1e9)}),
        ("action-outside", "actions: values outside the action space [-1, 1]", {"actions": _at(5.0)}),
        ("action-outside-negative", "actions: values outside the action space [-1, 1]", {"actions": _at(-1.5)}),
        ("terminal-two", "terminals must hold only 0 and 1 (row 7 holds 2)", {"terminals": _at(2)}),
        ("terminal-negative", "terminals must hold only 0 and 1 (row 7 holds -1)", {"terminals": _at(-1)}),
        ("timeout-half", "timeouts must hold only 0 and 1 (row 7 holds 0.5)", {"timeouts": _at(0.5)}),
        ("observation-huge", "observations reach 1e+30 at row", {"observations": _at(1e30)}),
    ]
]


SIZE_CASES = [
    Case("ck-embed-huge", _ck(_set("model.embed_dim", 12000)), "model.embed_dim must be an integer <= 4096"),
    Case("ck-context-huge", _ck(_set("model.context_len", 100000)), "model.context_len must be an integer <= 1000"),
    Case("ck-layers-huge", _ck(_set("model.n_layer", 1000)), "model.n_layer must be an integer <= 48"),
    Case("ck-inner-huge", _ck(_set("model.n_inner", 10**7)), "model.n_inner must be an integer <= 16384"),
    Case("ck-max-ep-len-huge", _ck(_set("max_ep_len", 10**12)), "max_ep_len must be an integer <= 100000"),
    Case("ck-scale-tiny", _ck(_set("scale", 1e-300)), "scale must be a finite number in [0.01, 1000000000]"),
    Case(
        "ck-state-mean-huge",
        _ck(_meta(lambda m: m.update(state_mean=[1e300] * len(m["state_mean"])))),
        "state_mean must hold only numbers within +-1e+06",
    ),
    Case("ck-embed-larger-than-weights", _ck(_set("model.embed_dim", 256)), "weights do not fit the config"),
    # One simulator per episode and target, all at once: 1,000,000 of them would need about 1.1 TB.
    Case(
        "evaluate-simulators-huge",
        _evaluate("--episodes", "10000", "--targets", *(str(t) for t in range(100))),
        "--episodes 10000 x 100 targets: 1,000,000 simulators at once need about",
    ),
]

SECOND_CORPUS = BOUND_FLAG_CASES + VALUE_CASES + SIZE_CASES
ALL_CASES = DATASET_CASES + CHECKPOINT_CASES + FLAG_CASES + SECOND_CORPUS


@pytest.fixture(scope="module")
def base(tiny_arrays, tiny_d4rl, tiny_checkpoint) -> dict:
    return {"arrays": tiny_arrays, "d4rl": tiny_d4rl, "checkpoint": tiny_checkpoint}


def test_corpus_is_large_and_distinct():
    ids = [c.id for c in ALL_CASES]
    assert len(ids) == len(set(ids)) and len(ids) + len(ZIP_CASES) >= 50
    assert len(SECOND_CORPUS) >= 40


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)
def test_cli_one_line_error(case, base, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "no-minari"))
    monkeypatch.chdir(tmp_path)
    argv = case.make(tmp_path, base)
    before = sorted(tmp_path.rglob("*"))
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if not line.startswith("warning: ")]
    assert code == 2, err
    assert len(errors) == 1 and errors[0].startswith("error: "), err
    assert case.expect in errors[0], errors[0]
    assert ".tmp" not in errors[0]
    assert sorted(tmp_path.rglob("*")) == before, "the refusal wrote files"


# One case of each class, through a real `python -m dt` process: exit status 2, one line, no traceback.
PROCESS_CASES = [
    "ds-truncated-half",
    "ds-obs-nan",
    "ck-context-len-text",
    "ck-weights-pickle",
    "ck-run-dir",
    "flag-save-every-0",
    "flag-json-dir",
    "flag-checkpoint-newline",
]


@pytest.mark.process
def test_cli_processes_print_no_traceback(base, tmp_path):
    by_id = {c.id: c for c in ALL_CASES}
    env = {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path / "no-minari")}
    procs = []
    for cid in PROCESS_CASES:  # started together: the torch import dominates, two cores share it
        d = tmp_path / cid
        d.mkdir()
        argv = by_id[cid].make(d, base)
        procs.append(
            (
                cid,
                subprocess.Popen(
                    [sys.executable, "-m", "dt", *argv],
                    cwd=ROOT,
                    env=env,
                    text=True,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                ),
            )
        )
    for cid, p in procs:
        out, err = p.communicate(timeout=300)
        lines = [line for line in err.strip().splitlines() if not line.startswith("warning: ")]
        assert p.returncode == 2, (cid, err)
        assert len(lines) == 1 and by_id[cid].expect in lines[0], (cid, err)
        assert "Traceback" not in err + out


# The package's other command lines (python -m dt.render, dt.preview, dt.behaviour.*) share dt.errors.run_cli.
MODULE_CASES = [
    (["dt.render", "--steps", "-5"], "--steps: must be an integer >= 1, got -5"),
    (["dt.render", "--width", "0"], "--width: must be an integer >= 16, got 0"),
    (["dt.render", "--width", "100000"], "--width: must be an integer <= 4096"),  # was an internal GL error
    (["dt.render", "--seed", "-1"], "--seed: must be an integer >= 0, got -1"),  # was an internal error
    (["dt.render", "--fps", "nan"], "--fps: must be a finite number in [1, 240]"),  # failed after the rollout
    (["dt.render", "--gif", "docs"], "--gif: docs is a directory"),  # named a temporary file after rendering
    (["dt.preview", "/nonexistent-checkpoint"], "not a checkpoint directory"),
    (["dt.preview", "/nonexistent-checkpoint", "--target", "nan"], "--target: must be a finite number"),
    (["dt.preview", "/nonexistent-checkpoint", "--max-steps", "-1"], "--max-steps: must be an integer >= 1"),
    (["dt.behaviour.ars", "--eval-episodes", "x"], "invalid int value"),
]


@pytest.mark.parametrize(("argv", "expect"), MODULE_CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
@pytest.mark.process
def test_module_command_lines_print_one_line(argv, expect):
    p = subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, text=True, capture_output=True, timeout=300)
    lines = [line for line in p.stderr.strip().splitlines() if not line.startswith("warning: ")]
    assert p.returncode == 2, p.stderr
    assert expect in lines[-1] and "Traceback" not in p.stderr + p.stdout, p.stderr


def test_cli_bug_is_one_line(monkeypatch, capsys, tmp_path):
    """The last net: an unexpected exception (a bug) is still one line, and says how to see the traceback."""
    import dt.cli.commands

    def boom(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(dt.cli.commands, "cmd_results", boom)
    assert main(["results", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: internal error ZeroDivisionError: division by zero (DT_DEBUG=1 shows the traceback)"]


# --------------------------------------------------------------------------- #
# The app's upload path
# --------------------------------------------------------------------------- #


ZIP_CASES = [
    ("zip-not-a-zip", lambda base: b"PK\x03\x04 not really", "not a zip file"),
    ("zip-truncated", lambda base: _zip(_good_files(base))[:-200], "not a zip file"),
    ("zip-empty", lambda base: _zip({}), "no checkpoint.json"),
    ("zip-traversal", lambda base: _zip({"../../checkpoint.json": b"{}"}), "unsafe path"),
    ("zip-absolute", lambda base: _zip({"/etc/checkpoint.json": b"{}"}), "unsafe path"),
    ("zip-backslash", lambda base: _zip({"..\\..\\checkpoint.json": b"{}"}), "unsafe path"),
    ("zip-drive", lambda base: _zip({"C:/x/checkpoint.json": b"{}"}), "unsafe path"),
    (
        "zip-symlink",
        lambda base: _zip({"ck/checkpoint.json": b"/etc/passwd"}, external_attr=(stat.S_IFLNK | 0o777) << 16),
        "symbolic link",
    ),
    ("zip-bomb-declared", lambda base: _zip({"ck/checkpoint.json": b"{}", "ck/big": bytes(3 << 20)}), "more than 2 MB"),
    # Every member claims 100 bytes; the weights inflate to 8 MB.
    ("zip-bomb-lying", lambda base: _zip({"ck/checkpoint.json": b"{}", "ck/w": bytes(8 << 20)}, file_size=100), "zip"),
    ("zip-many-members", lambda base: _zip({f"ck/f{i}": b"" for i in range(100)}), "100 files"),
    ("zip-corrupt-member", _corrupt_member, "damaged zip"),
    ("zip-encrypted-flag", lambda base: _zip(_good_files(base), flag_bits=0x1), "damaged zip"),
    ("zip-unknown-method", lambda base: _zip(_good_files(base), compress_type=99), "damaged zip"),
    (
        "zip-pickle-weights",
        lambda base: _zip({**_good_files(base), "ck/model.safetensors": pickle.dumps([1])}),
        "unreadable safetensors",
    ),
]


def _zipped_checkpoint_case(case: Case) -> Callable[[Path, dict], bytes]:
    def make(tmp: Path, base: dict) -> bytes:
        argv = case.make(tmp, base)
        d = Path(argv[argv.index("--checkpoint") + 1])
        if d.is_file():
            return _zip({"ck/checkpoint.json": d.read_bytes()})
        return _zip({f"ck/{f.relative_to(d)}": f.read_bytes() for f in d.rglob("*") if f.is_file()})

    return make


def _from_base(f: Callable[[dict], bytes]) -> Callable[[Path, dict], bytes]:
    return lambda tmp, base: f(base)


UPLOAD_CASES = [(c.id, _zipped_checkpoint_case(c), None) for c in CHECKPOINT_CASES if c.id != "ck-run-dir"] + [
    (cid, _from_base(f), expect) for cid, f, expect in ZIP_CASES
]


@pytest.mark.parametrize("cid, make, expect", UPLOAD_CASES, ids=[c[0] for c in UPLOAD_CASES])
def test_upload_one_line_error(cid, make, expect, base, tmp_path, monkeypatch):
    from app import paths
    from app.upload import install_upload
    from dt.errors import CheckpointError

    monkeypatch.setenv("DT_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("DT_MAX_UPLOAD_MB", "2")
    data = make(tmp_path, base)
    with pytest.raises(CheckpointError) as e:
        install_upload(f"{cid}.zip", data, env="hopper")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{cid}.zip") and ".tmp" not in msg, msg
    if expect:
        assert expect in msg, msg
    left = list(paths.uploads_dir().iterdir()) if paths.uploads_dir().exists() else []
    assert left == [], left  # a refused upload leaves nothing, hidden or not
    assert not (tmp_path / "etc").exists() and not (tmp_path / "runs" / "checkpoint.json").exists()


def test_upload_of_a_run_dir_installs_its_checkpoint(base, tmp_path, monkeypatch):
    from app.upload import install_upload

    monkeypatch.setenv("DT_RUNS_DIR", str(tmp_path / "runs"))
    run = tmp_path / "run"
    shutil.copytree(base["checkpoint"], run / "checkpoint")
    (run / "config.json").write_text("{}")  # the run's training config, not a model config
    data = _zip({f"run/{f.relative_to(run)}": f.read_bytes() for f in run.rglob("*") if f.is_file()})
    dest = install_upload("../../weird name?.zip", data, env="hopper")
    assert dest.parent == tmp_path / "runs" / "uploads" and dest.name.startswith("weird-name-")


@pytest.mark.process
def test_a_hostile_upload_is_refused_without_growing_the_server(base, tmp_path):
    """checkpoint.json declaring the largest model the bounds allow (4096 wide, 48 layers: 9.7 billion weights,
    39 GB) beside small weights: refused from the weights file's header, before a model is built, with the
    process growing by well under 100 MB (measured in a fresh process, as a server would run it)."""
    meta = json.loads((base["checkpoint"] / "checkpoint.json").read_text())
    meta["model"].update(embed_dim=4096, n_layer=48, n_head=64, n_inner=16384)
    files = {**_good_files(base), "ck/checkpoint.json": json.dumps(meta).encode()}
    (tmp_path / "up.zip").write_bytes(_zip(files))
    script = f"""
import resource, sys
from pathlib import Path
from app.upload import install_upload
from dt.errors import CheckpointError
data = Path({str(tmp_path / "up.zip")!r}).read_bytes()
install_upload("warm.zip", Path({str(tmp_path / "ok.zip")!r}).read_bytes(), env="hopper")  # imports, one model
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    install_upload("big.zip", data, env="hopper")
except CheckpointError as e:
    print("refused:", e)
print("grew_kb:", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""
    (tmp_path / "ok.zip").write_bytes(_zip(_good_files(base)))
    env = {**os.environ, "DT_RUNS_DIR": str(tmp_path / "runs"), "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, text=True, capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr
    refused, grew = p.stdout.strip().splitlines()[-2:]
    assert "big.zip" in refused and "weights do not fit the config" in refused, refused
    print(grew)
    assert int(grew.split()[1]) < 100_000, grew


@pytest.mark.parametrize(
    "exc",
    [
        MemoryError(),
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried"),
    ],
    ids=["python", "torch-cpu"],
)
def test_running_out_of_memory_is_one_line(exc, monkeypatch, capsys, tmp_path):
    """What the allocators raise (a torch CPU allocation of 10**12 floats raises the second) becomes one line."""
    import dt.cli.commands

    def allocate(args):
        raise exc

    monkeypatch.setattr(dt.cli.commands, "cmd_results", allocate)
    assert main(["results", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: out of memory: "), err
