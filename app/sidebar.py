"""The sidebar every page shares: environment, checkpoint picker and checkpoint upload."""

from __future__ import annotations

import streamlit as st

from app import state, upload
from dt.checkpoint import CheckpointError
from dt.envs import ENVS

_SOURCE = {"shipped": "Shipped", "run": "Your runs", "upload": "Uploaded"}


def _apply_runtime_defaults() -> None:
    """One torch thread for the app: batch-of-one rollouts only lose time to thread hand-offs."""
    import os

    import torch

    want = int(os.environ.get("DT_TORCH_THREADS", "1"))
    if torch.get_num_threads() != want:
        torch.set_num_threads(want)


def draw() -> None:
    _apply_runtime_defaults()
    s = state.session()
    entries = state.discover_checkpoints()
    with st.sidebar:
        envs = sorted(ENVS)
        if s.checkpoint is None and entries:
            s.env = entries[0].env
        st.selectbox("Environment", envs, **state.bind("sb.env", "env"))

        paths = [e.path for e in entries]
        if s.checkpoint not in paths:
            same_env = [e.path for e in entries if e.env == s.env]
            s.checkpoint = (same_env or paths or [None])[0]
        if entries:
            by_path = {e.path: e for e in entries}

            def fmt(p: str) -> str:
                e = by_path[p]
                other = "" if e.env == s.env else "  (other env)"
                return f"{_SOURCE[e.source]}: {e.label}{other}"

            st.selectbox("Checkpoint", paths, format_func=fmt, **state.bind("sb.ckpt", "checkpoint"))
            e = by_path[s.checkpoint]
            ret = ""
            if e.return_mean is not None:
                ret = f" · dataset returns {e.return_min:.0f} / {e.return_mean:.0f} / {e.return_max:.0f} (min/mean/max)"
            st.caption(f"{e.method} · {e.env} · {e.dataset} · {e.step:,} steps{ret}")
        else:
            st.caption("No checkpoints yet.")

        with st.expander("Upload a checkpoint (.zip)"):
            up = st.file_uploader(
                "A zipped checkpoint directory", type=["zip"], key="sb.upload", label_visibility="collapsed"
            )
            if up is not None and s.upload_id != up.file_id:
                s.upload_id = up.file_id
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
