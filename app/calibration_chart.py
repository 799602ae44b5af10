"""The Calibration page's figure: achieved against asked return, the diagonal, the data's range and returns, and
optionally a second checkpoint on the same axes (drawing only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.charts import COLORS
from dt.checkpoint.meta import DatasetInfo


def calibration(
    results: list[dict],
    ds: DatasetInfo,
    paper_targets: Sequence[float],
    title: str = "",
    data_returns: np.ndarray | None = None,
    compare: tuple[str, list[dict]] | None = None,
    name: str = "mean ± std",
) -> go.Figure:
    """Achieved return against target return, with the diagonal, the dataset's range and its return histogram.

    Args:
        results: ``EvalResult.as_dict()`` per target (with per-episode ``returns``).
        ds: The checkpoint's dataset summary (its return range is drawn).
        paper_targets: The paper's targets, drawn as labelled vertical lines.
        title: Figure title.
        data_returns: Episode returns of the training data, drawn as a histogram beside the y axis.
        compare: A second checkpoint's name and results on the same targets, drawn as a second curve.
        name: Legend name of the first curve.
    """
    x = np.array([r["target"] for r in results])
    curves = [(name, results, COLORS["R"]), *([(compare[0], compare[1], COLORS["compare"])] if compare else [])]
    tops = [r["return_mean"] + r["return_std"] for _, rs, _ in curves for r in rs]
    eps = [v for _, rs, _ in curves for r in rs for v in r.get("returns", [])]
    hi = float(max(x.max(), max(tops), max(eps, default=0), ds.return_max or 0)) * 1.05
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, column_widths=[0.8, 0.2], horizontal_spacing=0.02)
    fig.add_trace(
        go.Scatter(x=[0, hi], y=[0, hi], mode="lines", name="achieved = target", line=dict(color="black", dash="dash")),
        row=1,
        col=1,
    )
    for label, rs, color in curves:
        _calibration_curve(fig, label, rs, color, episodes_color=COLORS["s"] if color == COLORS["R"] else color)
    _calibration_references(fig, ds, paper_targets)
    if data_returns is not None and len(data_returns):
        fig.add_trace(
            go.Histogram(
                y=data_returns,
                nbinsy=40,
                name="dataset episodes",
                marker_color=COLORS["data"],
                hovertemplate="return %{y}: %{x} episodes<extra></extra>",
            ),
            row=1,
            col=2,
        )
        fig.update_xaxes(title_text="dataset episodes", row=1, col=2)
    else:
        fig.update_xaxes(visible=False, row=1, col=2)
    fig.update_xaxes(title_text="target return", range=[0, hi], tickformat=",.0f", row=1, col=1)
    fig.update_yaxes(title_text="achieved return", range=[0, hi], tickformat=",.0f", row=1, col=1)
    fig.update_layout(
        height=480,
        margin=dict(l=10, r=10, t=50 if title else 10, b=10),
        title=title or None,
        legend=dict(orientation="h", y=-0.18, x=0),
        bargap=0.05,
    )
    return fig


def _calibration_curve(fig: go.Figure, name: str, results: list[dict], color: str, episodes_color: str) -> None:
    """One checkpoint's episodes (dots) and per-target mean ± std (line) on the calibration figure."""
    xs = [r["target"] for r in results for _ in r.get("returns", [])]
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=[v for r in results for v in r.get("returns", [])],
            mode="markers",
            name=f"{name}: each episode" if name != "mean ± std" else "each episode",
            marker=dict(size=7, color=episodes_color, opacity=0.45),
            hovertemplate="target %{x:,.0f}: %{y:,.0f}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=[r["target"] for r in results],
            y=[r["return_mean"] for r in results],
            error_y=dict(array=[r["return_std"] for r in results]),
            mode="lines+markers",
            name=name,
            line=dict(color=color),
            hovertemplate=f"{name}<br>target %{{x:,.0f}}: mean %{{y:,.0f}}<extra></extra>",
        ),
        row=1,
        col=1,
    )


def _calibration_references(fig: go.Figure, ds: DatasetInfo, paper_targets: Sequence[float]) -> None:
    """The dataset's return range and best return, and the paper's targets (after the traces: plotly skips
    shapes on a subplot that has no trace yet)."""
    if ds.return_min is not None and ds.return_max is not None:
        fig.add_hrect(
            y0=ds.return_min,
            y1=ds.return_max,
            fillcolor=COLORS["data"],
            opacity=0.12,
            line_width=0,
            annotation_text="dataset return range",
            annotation_position="bottom left",
            row=1,
            col=1,
        )
        fig.add_hline(
            y=ds.return_max,
            line=dict(color=COLORS["data"], dash="dash"),
            annotation_text=f"best in dataset ({ds.return_max:,.0f})",
            annotation_position="top left",  # the right end holds the high targets' error bars
            row=1,
            col=1,
        )
    for t in paper_targets:
        fig.add_vline(
            x=t,
            line=dict(color=COLORS["target"], dash="dot", width=1),
            annotation_text=f"paper target {t:,.0f}",
            annotation_textangle=-90,
            annotation_position="top left",
            annotation_font=dict(size=10, color=COLORS["target"]),
            row=1,
            col=1,
        )
