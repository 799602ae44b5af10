"""Plotly figures of the Attention page: heatmaps, shares of attention by token kind, attention against target."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.charts import COLORS
from dt.checkpoint.meta import DatasetInfo
from dt.eval.tokens import KIND_NAMES, KINDS, PER_STEP

_MAX_TICKS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0)


def attention_heatmaps(
    attn: np.ndarray,
    labels: Sequence[str],
    mask: np.ndarray | None = None,
    title: str = "",
    layers: Sequence[int] | None = None,
) -> go.Figure:
    """(layers, heads, 3K, 3K) attention as one heatmap per layer and head (query rows, key columns).

    Colour is the square root of the weight (ticks show the weights themselves): attention over 3K keys is
    mostly small, and a linear scale would show little but the few largest entries.

    Args:
        attn: (layers, heads, 3K, 3K) weights.
        labels: 3K token labels (``dt.eval.tokens.token_labels``); each row and column is labelled.
        mask: (K,) real context slots; padding rows and columns are left blank.
        title: Figure title.
        layers: The layer number of each of ``attn``'s layers (0-based; default 0, 1, ...).
    """
    n_layer, n_head, n = attn.shape[:3]
    layers = list(range(n_layer)) if layers is None else list(layers)
    valid = np.ones(n, bool) if mask is None else np.repeat(np.asarray(mask) > 0, PER_STEP)  # (3K,)
    # Keys a query cannot see (later tokens: the causal mask; padding) are left out of the colour scale and show
    # the grey background, so they are not confused with a weight of zero.
    unseen = np.triu(np.ones((n, n), bool), k=1)
    blank = ~(valid[:, None] & valid[None, :]) | unseen
    per_layer = max(420, 12 * n + 120)  # px: a 10 px label per token row, plus the axis labels and titles
    gap = 130  # px between maps: the rotated key labels and axis title below one, the title of the next
    total = per_layer * n_layer + gap * (n_layer - 1)
    fig = make_subplots(
        rows=n_layer,
        cols=n_head,
        subplot_titles=[f"layer {layers[i] + 1} · head {h + 1}" for i in range(n_layer) for h in range(n_head)],
        # Room below each map for its rotated key labels and axis title, and above the next for its title.
        vertical_spacing=gap / total if n_layer > 1 else 0.06,
        horizontal_spacing=0.08,
    )
    idx = np.arange(n)
    hover = np.array([[f"query {labels[i]} → key {labels[j]}" for j in range(n)] for i in range(n)])
    for li in range(n_layer):
        for h in range(n_head):
            w = attn[li, h].astype(np.float32)
            fig.add_trace(
                go.Heatmap(
                    z=np.where(blank, np.nan, np.sqrt(np.clip(w, 0, 1))),
                    customdata=w,
                    x=idx,
                    y=idx,
                    colorscale="Viridis",
                    zmin=0,
                    zmax=1,
                    showscale=(li == 0 and h == n_head - 1),
                    colorbar=dict(
                        title=dict(text="attention weight", side="right"),
                        tickvals=np.sqrt(_MAX_TICKS).tolist(),
                        ticktext=[f"{t:g}" for t in _MAX_TICKS],
                        thickness=12,
                    ),
                    text=hover,
                    hovertemplate="%{text}: %{customdata:.3f}<extra></extra>",
                ),
                row=li + 1,
                col=h + 1,
            )
    # Every token labelled; 10 px dark text fits one label per row of a 3K = 60 token map 700 px tall.
    ticks = dict(tickmode="array", tickvals=idx.tolist(), ticktext=list(labels), tickfont=dict(size=10, color="#222"))
    fig.update_xaxes(title_text="key (token attended to)", title_font=dict(size=12), tickangle=-90, **ticks)
    fig.update_yaxes(title_text="query (token attending)", title_font=dict(size=12), autorange="reversed", **ticks)
    fig.update_xaxes(showgrid=False, zeroline=False)
    fig.update_yaxes(showgrid=False, zeroline=False)
    fig.update_layout(
        height=total,
        margin=dict(l=10, r=10, t=60 if title else 40, b=10),
        title=title or None,
        plot_bgcolor="#d9d9d9",  # what no query can see (above the diagonal, padding)
    )
    return fig


def attention_shares_bar(shares: np.ndarray, title: str = "") -> go.Figure:
    """(layers, heads, 3) attention mass of the action-predicting state token on R / s / a tokens."""
    n_layer, n_head, _ = shares.shape
    names = [f"layer {i + 1} · head {h + 1}" for i in range(n_layer) for h in range(n_head)]
    fig = go.Figure()
    for k, kind in enumerate(KINDS):
        fig.add_trace(
            go.Bar(
                x=names,
                y=shares[:, :, k].ravel(),
                name=f"{KIND_NAMES[kind]} tokens",
                marker_color=COLORS[kind],
                hovertemplate="%{x}: %{y:.0%}<extra></extra>",
            )
        )
    fig.update_layout(
        barmode="stack",
        height=300,
        yaxis=dict(range=[0, 1], title="share of attention", tickformat=".0%"),
        margin=dict(l=10, r=10, t=40 if title else 10, b=10),
        title=dict(text=title, y=0.97) if title else None,
        # Below the plot: a legend above it collides with the title on narrow screens.
        legend=dict(orientation="h", y=-0.25, x=0),
    )
    return fig


def attention_shares_over_time(shares_t: np.ndarray, step: int) -> go.Figure:
    """(T, 3) share on R / s / a (mean over layers and heads) for every step of the episode."""
    fig = go.Figure()
    t = np.arange(shares_t.shape[0])
    for k, kind in enumerate(KINDS):
        fig.add_trace(
            go.Scatter(
                x=t,
                y=shares_t[:, k],
                name=f"{KIND_NAMES[kind]} tokens",
                stackgroup="one",
                line=dict(color=COLORS[kind]),
                hovertemplate="step %{x}: %{y:.0%}<extra></extra>",
            )
        )
    fig.add_vline(x=step, line=dict(color="black", dash="dot"))
    fig.update_layout(
        height=280,
        yaxis=dict(range=[0, 1], title="share of attention", tickformat=".0%"),
        xaxis_title="env step",
        margin=dict(l=10, r=10, t=10, b=10),
        legend=dict(orientation="h", y=-0.3, x=0),
    )
    return fig


def return_attention_chart(targets: np.ndarray, share: np.ndarray, per_layer: np.ndarray, ds: DatasetInfo) -> go.Figure:
    """Share of attention on return tokens against the target return (mean and per layer)."""
    fig = go.Figure()
    if ds.return_min is not None and ds.return_max is not None:
        fig.add_vrect(
            x0=ds.return_min,
            x1=ds.return_max,
            fillcolor=COLORS["data"],
            opacity=0.12,
            line_width=0,
            annotation_text="dataset returns",
            annotation_position="top left",
        )
    for li in range(per_layer.shape[1]):
        fig.add_trace(
            go.Scatter(
                x=targets,
                y=per_layer[:, li],
                mode="lines",
                name=f"layer {li + 1}",
                line=dict(width=1, dash="dot"),
                hovertemplate="target %{x:,.0f}: %{y:.1%}<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=targets,
            y=share,
            mode="lines+markers",
            name="mean of layers",
            line=dict(color=COLORS["R"], width=3),
            hovertemplate="target %{x:,.0f}: %{y:.1%}<extra></extra>",
        )
    )
    top = float(max(per_layer.max(), share.max()))
    fig.update_layout(
        height=340,
        xaxis=dict(title="target return", tickformat=",.0f"),
        yaxis=dict(title="attention on return tokens", tickformat=".0%", range=[0, min(1.0, top * 1.2 + 0.02)]),
        margin=dict(l=10, r=10, t=10, b=10),
        legend=dict(orientation="h", y=-0.25, x=0),
    )
    return fig
