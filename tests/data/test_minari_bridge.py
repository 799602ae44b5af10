"""Minari export/import through the minari package, read back by minari and by this project's own reader."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from dt.cli.commands import main
from dt.data import DatasetError, load_dataset, make_dataset, read_d4rl, read_minari
from dt.data.minari_bridge import default_dataset_id, export_minari, simulate_final_states
from dt.data.minari_import import import_minari

FIELDS = ("observations", "actions", "rewards", "terminals", "timeouts", "episode_starts", "episode_lengths")
DS_ID = "mujoco/hopper/medium-v0"


def assert_same(a, b, fields=FIELDS):
    for k in fields:
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_dataset):
    """The tiny dataset exported with the minari package to a fresh Minari root."""
    root = tmp_path_factory.mktemp("minari")
    path = export_minari(tiny_dataset, DS_ID, root=root)
    return root, path


def test_default_id():
    assert default_dataset_id("hopper_medium_replay-v2") == "mujoco/hopper/medium-replay-v0"


def test_import_minari_roundtrip(exported, tiny_dataset):
    root, path = exported
    assert path == root / DS_ID and (path / "data" / "main_data.hdf5").exists()
    ds = import_minari(DS_ID, root=root)
    assert ds.kind == "minari" and ds.name == "hopper-medium"
    assert_same(ds, tiny_dataset, FIELDS + ("qpos", "qvel"))
    assert ds.metadata["env_id"] == "Hopper-v4" and ds.metadata["algorithm"] == "uniform random"
    assert ds.metadata["final_observation"] == "recorded"


def test_package_files_hold_final_observation_and_metadata(exported, tiny_arrays, tiny_dataset):
    import minari

    root, path = exported
    ends = tiny_dataset.episode_starts + tiny_dataset.episode_lengths - 1
    with h5py.File(path / "data" / "main_data.hdf5", "r") as f:
        for e in (0, tiny_dataset.num_episodes - 1):
            g, n = f[f"episode_{e}"], int(tiny_dataset.episode_lengths[e])
            assert g["observations"].shape == (n + 1, 11) and g["actions"].shape == (n, 3)
            assert g["infos/qpos"].shape == (n + 1, 6)  # aligned with the observations
            np.testing.assert_array_equal(g["observations"][-1], tiny_arrays["next_observations"][ends[e]])
    meta = json.loads((path / "data" / "metadata.json").read_text())
    assert meta["dataset_id"] == DS_ID and meta["algorithm_name"] == "uniform random"
    assert json.loads(meta["env_spec"])["id"] == "Hopper-v4"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        mds = minari.load_dataset(DS_ID)
        assert mds.total_steps == tiny_dataset.num_transitions and mds.total_episodes == tiny_dataset.num_episodes
        ret = tiny_dataset.episode_returns()[:3]
        np.testing.assert_allclose(minari.get_normalized_score(mds, ret), _norm(ret) / 100)  # D4RL's, on 0..1
        assert DS_ID in minari.list_local_datasets()


def _norm(r):
    from dt.envs import get_env

    return get_env("hopper").normalized_score(r)


def test_own_reader_reads_package_files(exported, tiny_dataset, tmp_path, monkeypatch):
    root, path = exported
    assert_same(read_minari(path), tiny_dataset)
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("DT_DATASET_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    ds = load_dataset("hopper-medium")
    assert ds.kind == "minari" and ds.name == "hopper-medium"
    assert_same(ds, tiny_dataset)


def test_own_reader_finds_package_metadata(exported):
    assert read_minari(exported[1]).metadata.get("dataset_id") == DS_ID


def test_existing_id_refused_nothing_overwritten(exported, tiny_dataset):
    root, path = exported
    h5 = path / "data" / "main_data.hdf5"
    before = (h5.stat().st_mtime_ns, (path / "data" / "metadata.json").read_bytes())
    with pytest.raises(DatasetError, match="already exists"):
        export_minari(tiny_dataset, DS_ID, root=root)
    assert (h5.stat().st_mtime_ns, (path / "data" / "metadata.json").read_bytes()) == before
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_final_observation_simulated_or_repeated(tmp_path, tiny_arrays, tiny_dataset, monkeypatch):
    ends = tiny_dataset.episode_starts + tiny_dataset.episode_lengths - 1
    obs, qpos, _ = simulate_final_states(tiny_dataset, "hopper")
    np.testing.assert_allclose(obs, tiny_arrays["next_observations"][ends], atol=1e-5)
    assert qpos.shape == (tiny_dataset.num_episodes, 6)
    # Without a source file nor qpos/qvel the last observation is repeated, and the metadata says so.
    n = int(ends[3]) + 1
    arrays = {k: tiny_arrays[k][:n] for k in ("observations", "actions", "rewards", "terminals", "timeouts")}
    bare = make_dataset("hopper-medium", "memory", "generated", arrays, {"env_id": "Hopper-v4"})
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))  # the default root is honoured
    path = export_minari(bare, "test/bare-v0")
    assert path == tmp_path / "test" / "bare-v0" and os.environ["MINARI_DATASETS_PATH"] == str(tmp_path)
    ds = import_minari("test/bare-v0")
    assert ds.metadata["final_observation"] == "repeated" and ds.qpos is None
    assert_same(ds, bare)


def test_errors(tmp_path, tiny_dataset):
    with pytest.raises(DatasetError, match="not found"):
        import_minari("mujoco/hopper/none-v0", root=tmp_path)
    with pytest.raises(DatasetError, match="malformed"):
        export_minari(tiny_dataset, "bad id!", root=tmp_path)


def test_cli_export_import(tmp_path, tiny_d4rl, tiny_arrays, tiny_dataset, capsys):
    root, out = tmp_path / "minari", tmp_path / "imported.hdf5"
    args = ["data", "export-minari", str(tiny_d4rl), "--dataset-id", "test/hopper/cli-v0", "--root", str(root)]
    assert main(args) == 0
    assert main(["data", "import-minari", "test/hopper/cli-v0", "--root", str(root), "--out", str(out)]) == 0
    ds = read_d4rl(out)
    assert ds.kind == "minari" and ds.metadata["imported_from"] == "test/hopper/cli-v0"  # labelled by origin, not D4RL
    assert_same(ds, tiny_dataset, FIELDS + ("qpos", "qvel"))
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["next_observations"][()], tiny_arrays["next_observations"])
    capsys.readouterr()
    for again in (args, ["data", "import-minari", "test/hopper/cli-v0", "--root", str(root), "--out", str(out)]):
        assert main(again) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err and ("exists" in err)
    assert main(["data", "import-minari", "test/hopper/missing-v0", "--root", str(root)]) == 2


@pytest.mark.parametrize("where", ["a-file", "proc"])
def test_cli_export_into_a_root_that_cannot_hold_folders_names_the_root(tmp_path, tiny_d4rl, where, capsys):
    # --root /proc named a temporary staging file ("/proc/.dt-export-...: No such file or directory").
    root = Path("/proc") if where == "proc" else tmp_path / "f" / "minari"
    if where == "a-file":
        (tmp_path / "f").write_text("a file, not a folder")
    assert main(["data", "export-minari", str(tiny_d4rl), "--dataset-id", "test/hopper/x-v0", "--root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {root}: cannot create a folder in this Minari root (") and "\n" not in err
    assert ".dt-export" not in err and "pick another --root" in err


def test_cli_export_with_a_relative_root(tmp_path, tiny_d4rl, monkeypatch, capsys):
    # A relative --root (or MINARI_DATASETS_PATH) failed: Minari joined it onto paths already made from it.
    monkeypatch.chdir(tmp_path)
    args = ["data", "export-minari", str(tiny_d4rl), "--dataset-id", "test/hopper/rel-v0", "--root", "mroot"]
    assert main(args) == 0, capsys.readouterr().err
    assert (tmp_path / "mroot" / "test" / "hopper" / "rel-v0" / "data" / "main_data.hdf5").is_file()
    assert not list((tmp_path / "mroot").glob(".dt-export-*"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", "mroot2")
    assert main(["data", "export-minari", str(tiny_d4rl), "--dataset-id", "test/hopper/rel-v0"]) == 0
    assert (tmp_path / "mroot2" / "test" / "hopper" / "rel-v0" / "data" / "main_data.hdf5").is_file()
    # Any --out name: the file is read back as written (a name that is not a D4RL file name said "unknown dataset").
    assert main(["data", "import-minari", "test/hopper/rel-v0", "--out", "mine.h5"]) == 0
    assert read_d4rl(tmp_path / "mine.h5").num_transitions > 0


@pytest.mark.parametrize("damage", ["truncated", "observations-group"])
def test_import_of_a_damaged_minari_dataset_is_one_line(tmp_path, tiny_d4rl, damage, capsys):
    root = tmp_path / "m"
    assert (
        main(["data", "export-minari", str(tiny_d4rl), "--dataset-id", "test/hopper/bad-v0", "--root", str(root)]) == 0
    )
    ddir = root / "test" / "hopper" / "bad-v0"
    data = ddir / "data" / "main_data.hdf5"
    if damage == "truncated":
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    else:
        with h5py.File(data, "r+") as f:
            ep = f[sorted(f.keys())[0]]
            del ep["observations"]
            ep.create_group("observations").create_dataset("x", data=np.zeros((3, 2)))
    capsys.readouterr()
    out = tmp_path / "o.hdf5"
    assert main(["data", "import-minari", "test/hopper/bad-v0", "--root", str(root), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "internal error" not in err, err
    assert not out.exists()
