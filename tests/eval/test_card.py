"""Dataset cards: figures, D4RL's published column, provenance notes, the histogram PNG and the CLI."""

from __future__ import annotations

import struct

import pytest

from dt.cli.commands import main
from dt.data import make_dataset
from dt.data.card import D4RL_FIGURES, write_card
from dt.envs import get_env


def png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def generated_medium(tiny_arrays):
    """The tiny data dressed as this project's generated hopper-medium."""
    arrays = {k: v for k, v in tiny_arrays.items() if k not in ("next_observations", "action_log_probs")}
    meta = {
        "generator": "dt.behaviour.generate",
        "generator_version": 1,
        "policy": "hopper-medium",
        "algorithm": "SAC",
        "seed": 7,
        "env_id": "Hopper-v4",
    }
    return make_dataset("hopper-medium", "/nowhere/hopper_medium-v2.hdf5", "generated", arrays, meta)


def test_card_beside_d4rl_figures(tmp_path, generated_medium):
    md = write_card(generated_medium, tmp_path)
    assert md == tmp_path / "hopper-medium.md"
    text = md.read_text()
    st = generated_medium.stats()
    assert f"| transitions | {st.transitions:,} | about 1,000,000 |" in text
    assert f"| episodes | {st.episodes:,} | about 2,186 |" in text
    assert "| return min |" in text and "about 316 |" in text and "about 3,222 |" in text
    assert "about 1,422" in text and "approximately, from D4RL" in text
    ref_norm = get_env("hopper").normalized_score(D4RL_FIGURES["hopper-medium"]["return_mean"])
    assert f"about {ref_norm:.0f} |" in text and f"{st.normalized_mean:,.1f}" in text
    assert "| return std |" in text and "n/a" in text  # not on record: never invented
    # Provenance: env version, behaviour policy from the metadata, and not a D4RL file.
    assert "`Hopper-v4`" in text and "`Hopper-v3`" in text and "mujoco-py" in text
    assert "`hopper-medium` (SAC), seed 7" in text and "not a D4RL file" in text
    png = tmp_path / "hopper-medium-returns.png"
    assert "](hopper-medium-returns.png)" in text
    assert png_size(png) == (600, 350)


def test_card_without_published_figures(tmp_path, tiny_dataset):
    text = write_card(tiny_dataset, tmp_path).read_text()
    assert tiny_dataset.kind == "d4rl" and "a real D4RL file" in text
    assert "| transitions | 3,000 | n/a |" in text and "not on record" in text
    assert "about" not in text.split("## How")[0].split("| figure |")[1]  # no D4RL number for hopper-random


def test_cli_card(tmp_path, tiny_d4rl, capsys):
    assert main(["data", "card", str(tiny_d4rl), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "hopper-random.md").exists() and (tmp_path / "hopper-random-returns.png").exists()
    assert main(["data", "card", str(tmp_path / "missing.hdf5"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "file not found" in err and "\n" not in err
