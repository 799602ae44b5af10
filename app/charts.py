"""Plotly figures for the pages (drawing only; the numbers come from dt)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

COLORS = {"R": "#d62728", "s": "#1f77b4", "a": "#2ca02c", "target": "#9467bd", "data": "#7f7f7f"}
TOKEN_TYPES = ("R", "s", "a")


def target_ruler(lo: float, hi: float, target: float, marks: dict[str, float]) -> go.Figure:
    """A thin axis under the target slider marking the dataset's returns and the paper's targets."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[lo, hi], y=[0, 0], mode="lines", line=dict(color="#ddd", width=2), hoverinfo="skip"))
    for i, (name, x) in enumerate(marks.items()):
        color = COLORS["target"] if name.startswith("paper") else COLORS["data"]
        fig.add_trace(
            go.Scatter(
                x=[x],
                y=[0],
                mode="markers+text",
                marker=dict(symbol="line-ns-open", size=16, color=color, line_width=2),
                text=[name],
                textposition="top center" if i % 2 == 0 else "bottom center",
                textfont=dict(size=10, color=color),
                hovertemplate=f"{name}: %{{x:.0f}}<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[target],
            y=[0],
            mode="markers",
            marker=dict(size=11, color="#ff4b4b"),
            hovertemplate="target %{x:.0f}<extra></extra>",
        )
    )
    fig.update_layout(
        height=80,
        margin=dict(l=8, r=8, t=6, b=6),
        showlegend=False,
        plot_bgcolor="rgba(0,0,0,0)",
        xaxis=dict(range=[lo, hi], showgrid=False, zeroline=False, ticks="outside"),
        yaxis=dict(visible=False, range=[-1, 1]),
    )
    return fig


def rollout_chart(returns_to_go: np.ndarray, rewards: np.ndarray, title: str = "") -> go.Figure:
    """Return-to-go the model was conditioned on, and reward per step, over the episode."""
    t = np.arange(len(rewards))
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(
        go.Scatter(x=t, y=returns_to_go, name="return-to-go remaining", line=dict(color=COLORS["R"])), secondary_y=False
    )
    fig.add_trace(
        go.Scatter(x=t, y=rewards, name="reward per step", line=dict(color=COLORS["s"], width=1), opacity=0.8),
        secondary_y=True,
    )
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="return-to-go", secondary_y=False)
    fig.update_yaxes(title_text="reward", secondary_y=True, showgrid=False)
    fig.update_layout(
        height=340,
        margin=dict(l=10, r=10, t=30 if title else 10, b=10),
        title=title or None,
        legend=dict(orientation="h", y=1.12, x=0),
    )
    return fig


def token_labels(timesteps: np.ndarray, mask: np.ndarray) -> list[str]:
    """R/s/a labels with their env timestep for a (K,) context; padding is '·'."""
    out = []
    for ts, m in zip(timesteps, mask):
        out += [f"{k}{int(ts)}" if m else "·" for k in TOKEN_TYPES]
    return out


def attention_heatmaps(
    attn: np.ndarray, labels: Sequence[str], mask: np.ndarray | None = None, title: str = ""
) -> go.Figure:
    """(layers, heads, 3K, 3K) attention as one heatmap per layer and head (query rows, key columns).

    ``mask`` (K,) marks real context slots; padding rows and columns are left blank.
    """
    n_layer, n_head, n = attn.shape[:3]
    valid = np.ones(n, bool) if mask is None else np.repeat(np.asarray(mask) > 0, 3)  # (3K,)
    blank = ~(valid[:, None] & valid[None, :])
    fig = make_subplots(
        rows=n_layer,
        cols=n_head,
        subplot_titles=[f"layer {i + 1} · head {h + 1}" for i in range(n_layer) for h in range(n_head)],
        vertical_spacing=0.12 if n_layer > 1 else 0.06,
        horizontal_spacing=0.04,
    )
    idx = np.arange(n)
    hover = np.array([[f"query {labels[i]} → key {labels[j]}" for j in range(n)] for i in range(n)])
    for li in range(n_layer):
        for h in range(n_head):
            fig.add_trace(
                go.Heatmap(
                    z=np.where(blank, np.nan, attn[li, h].astype(np.float32)),
                    x=idx,
                    y=idx,
                    colorscale="Viridis",
                    zmin=0,
                    zmax=1,
                    showscale=(li == 0 and h == n_head - 1),
                    text=hover,
                    hovertemplate="%{text}: %{z:.3f}<extra></extra>",
                ),
                row=li + 1,
                col=h + 1,
            )
    step = max(1, n // 20)
    ticks = dict(
        tickmode="array",
        tickvals=idx[::step].tolist(),
        ticktext=[labels[i] for i in idx[::step]],
        tickfont=dict(size=9),
    )
    fig.update_xaxes(**ticks)
    fig.update_yaxes(autorange="reversed", **ticks)
    fig.update_layout(height=360 * n_layer, margin=dict(l=10, r=10, t=50, b=10), title=title or None)
    return fig


def attention_shares_bar(shares: np.ndarray, title: str = "") -> go.Figure:
    """(layers, heads, 3) attention mass of the action-predicting state token on R / s / a tokens."""
    n_layer, n_head, _ = shares.shape
    names = [f"L{i + 1}H{h + 1}" for i in range(n_layer) for h in range(n_head)]
    fig = go.Figure()
    for k, kind in enumerate(TOKEN_TYPES):
        label = {"R": "return tokens", "s": "state tokens", "a": "action tokens"}[kind]
        fig.add_trace(go.Bar(x=names, y=shares[:, :, k].ravel(), name=label, marker_color=COLORS[kind]))
    fig.update_layout(
        barmode="stack",
        height=280,
        yaxis=dict(range=[0, 1], title="share of attention"),
        margin=dict(l=10, r=10, t=30 if title else 10, b=10),
        title=title or None,
        legend=dict(orientation="h", y=1.15),
    )
    return fig


def attention_shares_over_time(shares_t: np.ndarray, step: int) -> go.Figure:
    """(T, 3) share on R / s / a (mean over layers and heads) for every step of the episode."""
    fig = go.Figure()
    t = np.arange(shares_t.shape[0])
    for k, kind in enumerate(TOKEN_TYPES):
        label = {"R": "return tokens", "s": "state tokens", "a": "action tokens"}[kind]
        fig.add_trace(go.Scatter(x=t, y=shares_t[:, k], name=label, stackgroup="one", line=dict(color=COLORS[kind])))
    fig.add_vline(x=step, line=dict(color="black", dash="dot"))
    fig.update_layout(
        height=260,
        yaxis=dict(range=[0, 1], title="share"),
        xaxis_title="step",
        margin=dict(l=10, r=10, t=10, b=10),
        legend=dict(orientation="h", y=1.15),
    )
    return fig


def calibration(results: list[dict], ds: dict, paper_targets: Sequence[float], title: str = "") -> go.Figure:
    """Achieved return against target return, with the diagonal and the dataset's return range."""
    x = np.array([r["target"] for r in results])
    y = np.array([r["return_mean"] for r in results])
    err = np.array([r["return_std"] for r in results])
    hi = float(max(x.max(), y.max() + err.max(), ds.get("return_max") or 0)) * 1.05
    fig = go.Figure()
    if ds.get("return_min") is not None:
        fig.add_hrect(
            y0=ds["return_min"],
            y1=ds["return_max"],
            fillcolor=COLORS["data"],
            opacity=0.12,
            line_width=0,
            annotation_text="dataset return range",
            annotation_position="top left",
        )
        fig.add_hline(
            y=ds["return_max"],
            line=dict(color=COLORS["data"], dash="dash"),
            annotation_text="best in dataset",
            annotation_position="bottom right",
        )
    for t in paper_targets:
        fig.add_vline(x=t, line=dict(color=COLORS["target"], dash="dot", width=1))
    fig.add_trace(
        go.Scatter(x=[0, hi], y=[0, hi], mode="lines", name="achieved = target", line=dict(color="black", dash="dash"))
    )
    xs = [r["target"] for r in results for _ in r.get("returns", [])]
    ys = [v for r in results for v in r.get("returns", [])]
    fig.add_trace(
        go.Scatter(x=xs, y=ys, mode="markers", name="episodes", marker=dict(size=5, color=COLORS["s"], opacity=0.3))
    )
    fig.add_trace(
        go.Scatter(
            x=x, y=y, error_y=dict(array=err), mode="lines+markers", name="mean ± std", line=dict(color=COLORS["R"])
        )
    )
    fig.update_layout(
        height=460,
        xaxis=dict(title="target return", range=[0, hi]),
        yaxis=dict(title="achieved return", range=[0, hi]),
        margin=dict(l=10, r=10, t=80 if title else 40, b=10),
        title=title or None,
        legend=dict(orientation="h", y=1.02, yanchor="bottom"),
    )
    return fig


def loss_chart(records: list[dict]) -> go.Figure:
    fig = go.Figure(
        go.Scatter(
            x=[r["step"] for r in records if "loss" in r],
            y=[r["loss"] for r in records if "loss" in r],
            mode="lines+markers",
            name="loss",
        )
    )
    fig.update_layout(
        height=280,
        xaxis_title="step",
        yaxis_title="action MSE",
        margin=dict(l=10, r=10, t=30, b=10),
        title="Training loss",
    )
    return fig


def eval_chart(evals: list[dict]) -> go.Figure:
    fig = go.Figure()
    targets = sorted({r["target"] for e in evals for r in e["results"]}, reverse=True)
    for t in targets:
        pts = [(e["step"], r["normalized_mean"]) for e in evals for r in e["results"] if r["target"] == t]
        fig.add_trace(
            go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=f"target {t:.0f}")
        )
    fig.update_layout(
        height=280,
        xaxis_title="step",
        yaxis_title="normalized score",
        margin=dict(l=10, r=10, t=30, b=10),
        title="Evaluation",
    )
    return fig


def histogram(values: np.ndarray, title: str, xlabel: str, marks: dict[str, float] | None = None) -> go.Figure:
    fig = go.Figure(go.Histogram(x=values, nbinsx=50, marker_color=COLORS["s"]))
    for name, x in (marks or {}).items():
        fig.add_vline(x=x, line=dict(color=COLORS["R"], dash="dot"), annotation_text=name)
    fig.update_layout(
        height=300, title=title, xaxis_title=xlabel, yaxis_title="episodes", margin=dict(l=10, r=10, t=40, b=10)
    )
    return fig
