"""Plotly figures for the pages (drawing only; the numbers come from dt); the attention page's are
:mod:`app.attention_charts`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Imported before any figure is built, not for use here: plotly's validators look pandas up in sys.modules without
# importing it, so while one session's thread imports pandas lazily (a dataframe, plotly's JSON encoder) another
# session building a figure found the half-imported module and its page failed with "partially initialized module
# 'pandas' has no attribute 'Series'" (tests/app/test_browser_concurrent.py).
import pandas  # noqa: F401
import plotly.graph_objects as go
from plotly.subplots import make_subplots

COLORS = {
    "R": "#d62728",
    "s": "#1f77b4",
    "a": "#2ca02c",
    "target": "#9467bd",
    "data": "#7f7f7f",
    "follows": "#2ca02c",
    "compare": "#ff7f0e",
}


RULER_LEVELS = (0.8, -0.8, 1.6, -1.6)  # label rows: above, below, further above, further below the ruler


def ruler_label_levels(marks: dict[str, float], lo: float, hi: float, width_px: float = 420) -> dict[str, float]:
    """A label row for each mark so no two labels overlap at ``width_px`` (about 5.5 px per character).

    Marks are placed left to right, each on the first row whose previous label ends far enough to the left.
    """
    scale = width_px / max(hi - lo, 1e-9)  # px per return unit

    def half(name: str) -> float:
        return 2.75 * len(name) + 3  # half a label's width in px, with a margin

    right_edge = {level: -np.inf for level in RULER_LEVELS}
    levels = {}
    for name, x in sorted(marks.items(), key=lambda kv: kv[1]):
        px = (x - lo) * scale
        level = next((lv for lv in RULER_LEVELS if right_edge[lv] <= px - half(name)), RULER_LEVELS[-1])
        right_edge[level] = px + half(name)
        levels[name] = level
    return levels


def target_ruler(
    lo: float, hi: float, target: float, marks: dict[str, float], follows: tuple[float, float] | None = None
) -> go.Figure:
    """A thin numbered axis under the target slider marking the dataset's returns and the paper's targets, and as
    a thick green stretch the targets the model was measured to follow (``follows``, from its card)."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[lo, hi], y=[0, 0], mode="lines", line=dict(color="#ddd", width=2), hoverinfo="skip"))
    if follows is not None:
        fig.add_trace(
            go.Scatter(
                x=list(follows),
                y=[0, 0],
                mode="lines",
                line=dict(color=COLORS["follows"], width=7),
                opacity=0.55,
                hovertemplate=f"measured to follow the target (within 15%): {follows[0]:,.0f} to {follows[1]:,.0f}"
                "<extra></extra>",
            )
        )
    levels = ruler_label_levels(marks, lo, hi)
    for name, x in marks.items():
        color = COLORS["target"] if name.startswith("paper") else COLORS["data"]
        fig.add_trace(
            go.Scatter(
                x=[x],
                y=[0],
                mode="markers",
                marker=dict(symbol="line-ns-open", size=16, color=color, line_width=2),
                hovertemplate=f"{name}: %{{x:,.0f}}<extra></extra>",
            )
        )
        # Near an end a centred label would be cut off by the plot's edge (at 390 px the ruler is 340 px wide).
        at = (x - lo) / max(hi - lo, 1e-9)
        anchor = "left" if at < 0.1 else "right" if at > 0.9 else "center"
        fig.add_annotation(
            x=x, y=levels[name], text=name, showarrow=False, xanchor=anchor, font=dict(size=10, color=color)
        )
    fig.add_trace(
        go.Scatter(
            x=[target],
            y=[0],
            mode="markers",
            marker=dict(size=11, color="#ff4b4b"),
            hovertemplate="target %{x:,.0f}<extra></extra>",
        )
    )
    rows = max((abs(v) for v in levels.values()), default=0.8)
    fig.update_layout(
        height=96 if rows < 1.2 else 124,
        margin=dict(l=12, r=12, t=4, b=28),
        showlegend=False,
        plot_bgcolor="rgba(0,0,0,0)",
        xaxis=dict(
            range=[lo, hi],
            showgrid=False,
            zeroline=False,
            ticks="outside",
            showticklabels=True,
            tickformat=",.0f",
            nticks=8,
            tickfont=dict(size=10),
        ),
        yaxis=dict(visible=False, range=[-rows - 0.6, rows + 0.6]),
    )
    return fig


def _rtg_range(*series: np.ndarray) -> list[float]:
    """A return-to-go axis from 0 (or below, when returns overshoot) to a little above the largest value.

    A constant return-to-go (delayed-reward DT, BC) would otherwise get plotly's tiny autorange
    (3,599 / 3,599.5 / 3,600).
    """
    return _from_zero(*series, least_top=1.0)


def _from_zero(*series: np.ndarray, least_top: float) -> list[float]:
    """An axis range from 0 (or below, for negative values) to 5% above the largest value (at least
    ``least_top``), padded below zero only where values go there."""
    vals = np.concatenate([np.asarray(s, dtype=np.float64) for s in series])
    lo, hi = min(0.0, float(vals.min())), max(least_top, float(vals.max()))
    pad = 0.05 * (hi - lo)
    return [lo - (pad if lo < 0 else 0.0), hi + pad]


def _add_episode(
    fig: go.Figure, returns_to_go: np.ndarray, rewards: np.ndarray, name: str, other: bool, conditioned: bool = True
) -> None:
    """Return-to-go (left axis; the return so far for a model that reads no target) and reward per step (right
    axis) of one episode; ``other`` draws it dashed."""
    t = np.arange(len(rewards))
    pre = f"{name}: " if name else ""
    left = returns_to_go if conditioned else np.cumsum(rewards)
    fig.add_trace(
        go.Scatter(
            x=t,
            y=left,
            name=f"{pre}return-to-go" if conditioned else f"{pre}return so far",
            line=dict(color=COLORS["R"], dash="dash" if other else "solid"),
            opacity=0.6 if other else 1.0,
            hovertemplate="step %{x}: %{y:,.0f} to go<extra></extra>"
            if conditioned
            else "step %{x}: %{y:,.0f} so far<extra></extra>",
        ),
        secondary_y=False,
    )
    fig.add_trace(
        go.Scatter(
            x=t,
            y=rewards,
            name=f"{pre}reward per step",
            line=dict(color=COLORS["data" if other else "s"], width=1, dash="dot" if other else "solid"),
            opacity=0.8,
            hovertemplate="step %{x}: reward %{y:.2f}<extra></extra>",
        ),
        secondary_y=True,
    )


def rollout_chart(
    returns_to_go: np.ndarray,
    rewards: np.ndarray,
    title: str = "",
    compare: tuple[str, np.ndarray, np.ndarray] | None = None,
    switches: Sequence[tuple[int, float]] = (),
    name: str = "",
    conditioned: bool = True,
    ranges: tuple[list[float], list[float]] | None = None,
) -> go.Figure:
    """Return-to-go the model was conditioned on, and reward per step, over the episode.

    Args:
        returns_to_go: (T,) return-to-go at each step.
        rewards: (T,) reward per step.
        title: Figure title.
        compare: ``(name, returns_to_go, rewards)`` of a second episode, drawn dashed.
        switches: ``(step, new target)`` of a target schedule, marked by vertical lines.
        name: Name of the main episode in the legend (e.g. "steered").
        conditioned: False for a model that reads no target (BC): the left axis shows the return so far.
        ranges: (left, right) axis ranges shared with another chart (:func:`shared_ranges`).
    """
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    _add_episode(fig, returns_to_go, rewards, name, other=False, conditioned=conditioned)
    series = [returns_to_go if conditioned else np.cumsum(rewards)]
    if compare is not None:
        _add_episode(fig, compare[1], compare[2], compare[0], other=True, conditioned=conditioned)
        series.append(compare[1] if conditioned else np.cumsum(compare[2]))
    for step, tgt in switches:
        fig.add_vline(
            x=step,
            line=dict(color=COLORS["target"], dash="dot"),
            annotation_text=f"step {step}: target → {tgt:,.0f}",
            annotation_position="top right",
            annotation_font=dict(size=10, color=COLORS["target"]),
        )
    fig.update_xaxes(title_text="env step")
    left_range, right_range = ranges if ranges is not None else (_rtg_range(*series), None)
    fig.update_yaxes(
        title_text="return-to-go" if conditioned else "return so far",
        secondary_y=False,
        range=left_range,
        tickformat=",.0f",
        rangemode="tozero",
    )
    # Three significant digits: ".1f" labelled a narrow range's ticks 0.9, 0.9, 1.0, 1.0.
    # Its own round ticks: left to plotly, the overlaying axis took the left axis's grid positions (0.884, 0.917).
    fig.update_yaxes(
        title_text="reward per step",
        secondary_y=True,
        showgrid=False,
        tickformat=".3~g",
        range=right_range,
        tickmode="auto",
        nticks=5,
    )
    fig.update_layout(
        height=360,
        margin=dict(l=10, r=10, t=40 if title else 10, b=10),
        title=title or None,
        legend=dict(orientation="h", y=-0.22, x=0, font=dict(size=11)),
    )
    return fig


def shared_ranges(episodes: Sequence[tuple[np.ndarray, np.ndarray, bool]]) -> tuple[list[float], list[float]]:
    """One (left, right) pair of axis ranges for several episodes' charts, each given as (returns_to_go,
    rewards, conditioned), so that charts side by side compare by eye."""
    left = [rtg if cond else np.cumsum(rew) for rtg, rew, cond in episodes]
    return _rtg_range(*left), _from_zero(*(rew for _, rew, _ in episodes), least_top=1e-6)


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
        # From step 0 (a single first point would otherwise get an axis of 99 to 101), and a loss axis from 0.
        xaxis=dict(title="training step", tickformat=",", rangemode="tozero"),
        yaxis=dict(title="action MSE (loss)", rangemode="tozero"),
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
        xaxis=dict(title="training step", tickformat=",", rangemode="tozero"),
        yaxis_title="D4RL normalized score",
        margin=dict(l=10, r=10, t=30, b=10),
        title="Evaluation",
    )
    return fig


def histogram(values: np.ndarray, title: str, xlabel: str, marks: dict[str, float] | None = None) -> go.Figure:
    """Episodes per bin of ``values``: counts are whole episodes, so the count axis has whole-number ticks."""
    counts, _ = np.histogram(values, bins=50)
    fig = go.Figure(go.Histogram(x=values, nbinsx=50, marker_color=COLORS["s"]))
    for name, x in (marks or {}).items():
        fig.add_vline(x=x, line=dict(color=COLORS["R"], dash="dot"), annotation_text=name)
    fig.update_layout(
        height=300, title=title, xaxis_title=xlabel, yaxis_title="episodes", margin=dict(l=10, r=10, t=40, b=10)
    )
    fig.update_xaxes(tickformat=",.0f")
    # plotly's automatic ticks on a short count axis are 0, 0.5, 1, ...: whole numbers only.
    fig.update_yaxes(tickformat=",d", dtick=1 if counts.max(initial=0) <= 6 else None, rangemode="tozero")
    return fig
