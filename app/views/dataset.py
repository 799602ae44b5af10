"""Dataset explorer: returns and lengths of the training data, and replay of any stored episode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from app import cache, charts, paths, sidebar, state
from dt.data import DatasetError
from dt.errors import first_line

sidebar.draw()
st.title("Dataset explorer")
s = state.session()
found = cache.available_datasets()
options: dict[str, str] = {}  # label -> name or path to load
ck = state.current_checkpoint(show_errors=False)
ck_data = None  # (name, label) of the selected checkpoint's training data when it is on this machine
if ck is not None:
    src, name = ck.info.dataset.source, ck.info.dataset.name
    if src and Path(src).exists():
        ck_data = (name, f"{name} (this checkpoint's training data)")
        options[ck_data[1]] = src
for n, kind, _path in found:
    options.setdefault(f"{n} ({kind})", n)
OTHER = "Other path…"
labels = [*options, OTHER]
if s.dataset not in labels:
    s.dataset = labels[0]
st.selectbox("Dataset", labels, **state.bind("ds.pick", "dataset"))
if s.dataset == OTHER:
    path = st.text_input("Dataset path (D4RL .hdf5 file or Minari directory)", **state.bind("ds.path", "dataset_path"))
    if not path.strip():
        st.info("Enter a path, or generate a dataset on the Train page (its **Generate dataset** button).")
        st.page_link("views/train.py", label="Train: generate a dataset", icon=":material/dataset:")
        st.stop()
    source = path.strip()
else:
    source = options[s.dataset]

try:
    with st.spinner("Reading the dataset…"):
        ds = cache.dataset(source)
except DatasetError as e:
    st.error(first_line(e, 1000))
    st.stop()

st_ = ds.stats()
rets = ds.episode_returns()
c = st.columns(4)
c[0].metric("Episodes", f"{st_.episodes:,}")
c[1].metric("Transitions", f"{st_.transitions:,}")
c[2].metric("Mean episode length", f"{st_.length_mean:,.0f} steps")
c[3].metric("Normalized mean", f"{st_.normalized_mean:.1f}" if st_.normalized_mean is not None else "–")
r = st.columns(4)
r[0].metric("Return min", f"{st_.return_min:,.0f}")
r[1].metric("Return mean", f"{st_.return_mean:,.0f}")
r[2].metric("Return max", f"{st_.return_max:,.0f}")
r[3].metric("Return std", f"{float(rets.std()):,.0f}")
st.caption(f"{ds.kind} · {ds.source}")
if ck is not None and (ck_data is None or s.dataset != ck_data[1]):
    trained_on = ck.info.dataset.name or "data not recorded in the checkpoint"
    where = "" if ck_data is not None else " (not on this machine: generate it on the Train page)"
    st.caption(
        f":material/info: This is not the training data of the selected checkpoint "
        f"`{paths.checkpoint_name(ck.path)}`, which learnt from "
        f"{trained_on}{where}."
    )

h1, h2 = st.columns(2)
mean_mark = {f"mean {rets.mean():,.0f}": float(rets.mean())}
h1.plotly_chart(charts.histogram(rets, "Episode returns", "return (sum of rewards)", mean_mark), key="ds.ret")
h2.plotly_chart(charts.histogram(ds.episode_lengths, "Episode lengths", "env steps"), key="ds.len")

st.subheader("Replay an episode")
order = np.argsort(rets)
picks = {"best": int(order[-1]), "median": int(order[len(order) // 2]), "worst": int(order[0])}


def _pick(which: str) -> None:
    s.dataset_episode = picks[which]


if s.dataset_episode is None or s.dataset_episode >= ds.num_episodes:
    s.dataset_episode = picks["best"]
b = st.columns([2, 1, 1, 1], vertical_alignment="bottom")
b[0].number_input("Episode", 0, ds.num_episodes - 1, **state.bind("ds.ep", "dataset_episode", int))
idx = s.dataset_episode
for col, which in zip(b[1:], picks):
    col.button(which, on_click=_pick, args=(which,), key=f"ds.{which}", width="stretch")
st.caption(f"Episode {idx:,}: return {rets[idx]:,.0f}, {int(ds.episode_lengths[idx]):,} steps.")
try:
    with st.spinner("Rendering the stored states…"):
        mp4 = cache.dataset_episode_mp4(source, idx)
except (DatasetError, RuntimeError) as e:
    st.error(first_line(e, 1000))
else:
    v, _ = st.columns([1, 1])
    state.play_video(v, mp4, "ds.episode", f"{ds.name} episode {idx:,}")
