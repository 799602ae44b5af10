"""Readers for D4RL- and Minari-layout files, the search order, bad input and the downloader."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest

from dt.data import DatasetError, load_dataset, locate, read_d4rl, read_minari, split_episodes, write_d4rl
from dt.data.locate import canonical_name, d4rl_filename, download


def test_split_episodes_at_terminals_or_timeouts():
    ends = np.array([0, 0, 1, 0, 1, 1, 0, 0], dtype=bool)
    starts, lens = split_episodes(ends)
    assert starts.tolist() == [0, 3, 5, 6]
    assert lens.tolist() == [3, 2, 1, 2]  # the trailing unfinished episode is kept


def test_d4rl_roundtrip_and_stats(tiny_arrays, tiny_d4rl):
    ds = read_d4rl(tiny_d4rl)
    assert ds.name == "hopper-random" and ds.kind == "d4rl"
    assert ds.num_transitions == 3000
    ends = tiny_arrays["terminals"] | tiny_arrays["timeouts"]
    assert ds.num_episodes == int(ends.sum()) + (0 if ends[-1] else 1)
    # Each episode ends exactly where the flags say.
    last = ds.episode_starts + ds.episode_lengths - 1
    assert ends[last[:-1]].all()  # no flag inside an episode, one at each end
    assert ends[: last[-2] + 1].sum() == len(last) - 1
    st = ds.stats()
    ret = ds.episode_returns()
    assert st.return_max == pytest.approx(ret.max()) and st.transitions == 3000
    for i in (0, 5):
        s, n = ds.episode_starts[i], ds.episode_lengths[i]
        assert ret[i] == pytest.approx(tiny_arrays["rewards"][s : s + n].astype(np.float64).sum(), rel=1e-6)
    assert ds.qpos.shape == (3000, 6) and ds.qvel.shape == (3000, 6)


def test_d4rl_float64_without_infos(tmp_path, tiny_arrays):
    path = tmp_path / "hopper_medium_replay-v2.hdf5"
    with h5py.File(path, "w") as f:  # the layout of D4RL's replay files: float64, no infos, 2-D rewards
        for k in ("observations", "actions"):
            f[k] = tiny_arrays[k].astype(np.float64)
        f["rewards"] = tiny_arrays["rewards"].astype(np.float64)[:, None]
        f["terminals"] = tiny_arrays["terminals"].astype(np.float64)
        f["timeouts"] = tiny_arrays["timeouts"]
    ds = read_d4rl(path)
    assert ds.name == "hopper-medium-replay"
    assert ds.observations.dtype == np.float32 and ds.qpos is None
    np.testing.assert_allclose(ds.rewards, tiny_arrays["rewards"], rtol=1e-6)


def write_minari(root: Path, arrays: dict, episodes: int = 5) -> None:
    """A Minari dataset directory as minari writes it: episode groups with T+1 observations."""
    (root / "data").mkdir(parents=True)
    starts = np.flatnonzero(np.r_[True, (arrays["terminals"] | arrays["timeouts"])[:-1]])
    with h5py.File(root / "data" / "main_data.hdf5", "w") as f:
        for e in range(episodes):
            s, n = starts[e], starts[e + 1] - starts[e]
            g = f.create_group(f"episode_{e}")
            obs = arrays["observations"][s : s + n]
            g["observations"] = np.concatenate([obs, arrays["next_observations"][s + n - 1 : s + n]])
            g["actions"] = arrays["actions"][s : s + n]
            g["rewards"] = arrays["rewards"][s : s + n].astype(np.float64)
            g["terminations"] = arrays["terminals"][s : s + n]
            g["truncations"] = arrays["timeouts"][s : s + n]
    (root / "data" / "metadata.json").write_text(
        json.dumps({"dataset_id": "mujoco/hopper/medium-v0", "total_episodes": episodes})
    )


def test_minari_reader_drops_final_observation(tmp_path, tiny_arrays):
    root = tmp_path / "mujoco" / "hopper" / "medium-v0"
    write_minari(root, tiny_arrays)
    ds = read_minari(root)
    assert ds.name == "hopper-medium" and ds.kind == "minari" and ds.num_episodes == 5
    ends = np.flatnonzero(tiny_arrays["terminals"] | tiny_arrays["timeouts"])
    assert ds.num_transitions == ends[4] + 1
    np.testing.assert_array_equal(ds.observations, tiny_arrays["observations"][: ends[4] + 1])
    assert ds.terminals[ds.episode_starts + ds.episode_lengths - 1].all()


def test_search_order_explicit_d4rl_minari_generated(tmp_path, monkeypatch, tiny_arrays):
    d4rl, minari, gen = tmp_path / "d4rl", tmp_path / "minari", tmp_path / "gen"
    monkeypatch.setenv("D4RL_DATASET_DIR", str(d4rl))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari))
    monkeypatch.setenv("DT_DATASET_DIR", str(gen))
    with pytest.raises(DatasetError, match="not found.*dt data generate"):
        locate("hopper-medium")
    write_d4rl(gen / d4rl_filename("hopper-medium"), tiny_arrays, {"generator": "dt.behaviour.generate"})
    assert locate("hopper-medium").kind == "generated"
    assert load_dataset("hopper-medium").kind == "generated"
    write_minari(minari / "mujoco" / "hopper" / "medium-v0", tiny_arrays)
    assert locate("hopper-medium").kind == "minari"
    write_d4rl(d4rl / "hopper_medium-v2.hdf5", tiny_arrays)
    assert locate("hopper-medium").kind == "d4rl"  # a real D4RL file wins
    assert load_dataset("hopper-medium").kind == "d4rl"
    explicit = tmp_path / "mine.hdf5"
    write_d4rl(explicit, tiny_arrays)
    assert locate(str(explicit)).path == explicit


def test_names():
    assert canonical_name("hopper_medium_expert-v2") == "hopper-medium-expert"
    assert d4rl_filename("hopper-medium-replay") == "hopper_medium_replay-v2.hdf5"
    with pytest.raises(DatasetError, match="unknown dataset 'hopper-foo'; known: hopper-random"):
        canonical_name("hopper-foo")


# ---- bad input: one line naming the file and the problem ----------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match=r"nope.hdf5: file not found"):
        read_d4rl(tmp_path / "nope.hdf5")


def test_truncated_file(tmp_path, tiny_d4rl):
    bad = tmp_path / "trunc.hdf5"
    bad.write_bytes(tiny_d4rl.read_bytes()[:5000])
    with pytest.raises(DatasetError, match="trunc.hdf5: ") as e:
        read_d4rl(bad)
    assert "\n" not in str(e.value)


def test_not_hdf5(tmp_path):
    bad = tmp_path / "x.hdf5"
    bad.write_text("hello")
    with pytest.raises(DatasetError, match="x.hdf5: not a readable hdf5 file"):
        read_d4rl(bad)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda a: a["observations"].__setitem__((7, 2), np.nan), "observations holds NaN or inf"),
        (lambda a: a["rewards"].__setitem__(3, np.inf), "rewards holds NaN or inf"),
        (lambda a: a.__setitem__("actions", a["actions"][:-1]), "actions has 2999 rows but observations has 3000"),
        (lambda a: a.__setitem__("observations", a["observations"][:, 0]), "must be 2-D"),
        (lambda a: a.pop("actions"), "missing actions"),
    ],
)
def test_bad_arrays(tmp_path, tiny_arrays, mutate, message):
    arrays = {k: v.copy() for k, v in tiny_arrays.items()}
    mutate(arrays)
    path = tmp_path / "bad.hdf5"
    write_d4rl(path, arrays)
    with pytest.raises(DatasetError, match=message):
        read_d4rl(path)


def test_zero_length_minari_episode(tmp_path, tiny_arrays):
    root = tmp_path / "m"
    write_minari(root, tiny_arrays, episodes=2)
    with h5py.File(root / "data" / "main_data.hdf5", "a") as f:
        g = f.create_group("episode_2")
        g["observations"] = np.zeros((1, 11))
        g["actions"] = np.zeros((0, 3))
        g["rewards"] = np.zeros(0)
        g["terminations"] = np.zeros(0, bool)
        g["truncations"] = np.zeros(0, bool)
    with pytest.raises(DatasetError, match="episode_2 has zero length"):
        read_minari(root)


def test_atomic_write_leaves_old_file_on_failure(tmp_path, tiny_arrays):
    path = tmp_path / "d.hdf5"
    write_d4rl(path, tiny_arrays)
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_d4rl(path, {"observations": object()})  # fails midway
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["d.hdf5"]


# ---- download against a local HTTP server ------------------------------------------------------


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    payload = b""
    fail_after: int | None = None  # close the connection after this many bytes (first request only)

    def do_GET(self):  # noqa: N802
        data, start = self.payload, 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if type(self).fail_after is not None:
            self.wfile.write(body[: type(self).fail_after])
            type(self).fail_after = None
            self.wfile.flush()
            self.connection.close()
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server(tiny_d4rl):
    _RangeHandler.payload = tiny_d4rl.read_bytes()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hopper_medium-v2.hdf5"
    srv.shutdown()


def test_download_resumes_and_is_atomic(tmp_path, http_server, tiny_d4rl):
    _RangeHandler.fail_after = 4096
    with pytest.raises(DatasetError, match="rerun to resume"):
        download("hopper-medium", tmp_path, url=http_server)
    assert not (tmp_path / "hopper_medium-v2.hdf5").exists()
    assert (tmp_path / "hopper_medium-v2.hdf5.part").stat().st_size == 4096
    path = download("hopper-medium", tmp_path, url=http_server)
    assert path.read_bytes() == tiny_d4rl.read_bytes()
    assert not (tmp_path / "hopper_medium-v2.hdf5.part").exists()
    assert read_d4rl(path).num_transitions == 3000


def test_download_rejects_non_dataset(tmp_path, http_server):
    _RangeHandler.payload = b"<html>not found</html>"
    with pytest.raises(DatasetError, match="not a valid D4RL dataset"):
        download("hopper-medium", tmp_path, url=http_server)
    assert list(tmp_path.iterdir()) == []
