"""The sidebar every page shares: environment, checkpoint picker and checkpoint upload."""

from __future__ import annotations

import streamlit as st

from app import address, catalog, state
from dt.envs import ENVS
from dt.errors import CheckpointError
from dt.eval.metrics import settled_verdict

_SOURCE = {"shipped": "Shipped", "run": "Your runs", "upload": "Uploaded"}


# The methods the picker names, for newcomers (the picker's help and the caption under it).
METHODS = {
    "DT": "Decision Transformer, acts to collect the target return you set",
    "RADT": "return-aligned DT: a DT whose every layer is modulated by the target return, so the return it "
    "collects follows the target most closely",
    "DT (delayed reward)": "a DT that sees the whole return only at the episode's last step (the paper's test)",
    "BC": "behaviour cloning, imitates the actions of every training episode and reads no target",
    "BC10": "behaviour cloning on the best 10% of the training data (by return); reads no target",
    "DT (best N%)": "a DT trained on the best N% of the data (by return)",
}


def draw() -> None:
    state.new_run()
    s = state.session()
    entries = catalog.discover_checkpoints()
    with st.sidebar:
        _environment(s, entries)
        paths = [e.path for e in entries]
        if s.checkpoint not in paths:  # the default first, so that an address without a checkpoint applies to it
            same_env = [e.path for e in entries if e.env == s.env]
            s.checkpoint = (same_env or paths or [None])[0]
        if not s.address_read:  # a reload or a shared link: the address names the view (app.address)
            s.address_read = True
            s.address_msg = address.apply(s, st.query_params, paths)
        if s.address_msg:
            st.info(s.address_msg, icon=":material/link_off:")
            s.address_msg = None  # said once
        if entries:
            _picker(s, entries)
        else:
            st.caption("No checkpoints yet.")
        with st.expander("Upload a checkpoint (.zip)"):
            _upload(s)


def _environment(s: state.Session, entries: list[catalog.CheckpointEntry]) -> None:
    """Only envs that some checkpoint serves; the rest are explained, not offered as a dead end."""
    envs = sorted({e.env for e in entries} & set(ENVS)) or ["hopper"]
    if (s.checkpoint is None and entries) or s.env not in envs:
        s.env = entries[0].env if entries else envs[0]
    st.selectbox("Environment", envs, **state.bind("sb.env", "env"))
    missing = sorted(set(ENVS) - set(envs))
    if missing:
        st.caption(
            f"{' and '.join(missing)}: no checkpoint here yet. Datasets can be generated for hopper only "
            "(its behaviour policies ship with dt); with a D4RL file for another env, train on the **Train** "
            "page (“Other path…”) or upload a checkpoint below."
        )


def _picker(s: state.Session, entries: list[catalog.CheckpointEntry]) -> None:
    """The checkpoint picker and, under it, what the chosen one is (method, data, score)."""
    by_path = {e.path: e for e in entries}

    def fmt(p: str) -> str:
        # Short enough for the sidebar at 390 px; the caption below gives the details.
        e = by_path[p]
        other = "" if e.env == s.env else f" ({e.env}: other env)"
        return f"{_SOURCE[e.source]}: {e.name} · {e.method}{other}"

    st.selectbox(
        "Checkpoint",
        list(by_path),
        format_func=fmt,
        help="  \n".join(f"**{k}**: {v}" for k, v in METHODS.items()),
        **state.bind("sb.ckpt", "checkpoint"),
    )
    e = by_path[s.checkpoint]
    lines = [f"{e.method} · {e.env} · trained on {e.dataset} for {e.step:,} steps"]
    best = e.method.startswith("DT (best ")  # "DT (best 25%)": the glossary's "DT (best N%)"
    meaning = METHODS.get("DT (best N%)" if best else e.method)
    if meaning:
        meaning = meaning.replace("N%", e.method[len("DT (best ") : -1]) if best else meaning
        lines.append(f"{e.method}: {meaning}")
    if e.selection:
        lines.append(f"trained on {e.selection}")
    if e.score is not None:
        lines.append(f"D4RL normalized score {e.score:.1f} at target {e.score_target:,.0f}")
    if e.alignment_gap is not None:
        lines.append(f"alignment gap {e.alignment_gap:.1f} points (0: returns exactly the target)")
    if e.spread is not None:
        luck = f"; episode luck alone: {e.luck:.1f}" if e.luck is not None else ""
        lines.append(
            f"last three training evaluations within {e.spread:.1f} points ({settled_verdict(e.spread)}{luck})"
        )
    if e.return_mean is not None:
        lines.append(f"dataset returns: min {e.return_min:,.0f}, mean {e.return_mean:,.0f}, max {e.return_max:,.0f}")
    st.caption("  \n".join(lines))


def _upload(s: state.Session) -> None:
    """A zipped checkpoint directory, checked and installed (app.upload); its outcome said once."""
    up = st.file_uploader("A zipped checkpoint directory", type=["zip"], key="sb.upload", label_visibility="collapsed")
    if up is not None and s.upload_id != up.file_id:
        s.upload_id = up.file_id
        from app import upload  # torch: only when a zip arrives

        try:
            dest = upload.install_upload(up.name, up.getvalue(), env=s.env)
        except CheckpointError as err:
            s.upload_msg = ("error", str(err).splitlines()[0])
        else:
            s.checkpoint = str(dest.resolve())
            s.upload_msg = ("success", f"Loaded {up.name}")
            st.rerun()
    kind, msg = s.upload_msg or (None, None)
    if kind == "error":
        st.error(msg)
    elif kind == "success":
        st.success(msg)
