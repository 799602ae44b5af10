"""How a checkpoint's training is named for people: the method label (``radt25``, ``bc10``) and the part of the
dataset it learnt from. Pure functions of the training config's fields; :class:`dt.checkpoint.meta.CheckpointMeta`
and the app read them through its properties.
"""

from __future__ import annotations


def method_of(model_type: str, pct_traj: float = 1.0, delayed: bool = False) -> str:
    """The method's short name, as the papers name it: ``dt``, ``dt-delayed``, ``radt`` (the return-aligned DT),
    ``bc`` or ``bc10`` (10% BC); a model trained on the best NN% of timesteps is ``dtNN`` (``radtNN``, ``bcNN``)."""
    if model_type in ("bc", "radt"):
        return model_type if pct_traj >= 1.0 else f"{model_type}{round(pct_traj * 100)}"
    if delayed:
        return "dt-delayed"
    return "dt" if pct_traj >= 1.0 else f"dt{round(pct_traj * 100)}"


def selection_of(pct_traj: float = 1.0, pct_rule: str = "timesteps", return_weighting: float = 0.0) -> str | None:
    """The part of its dataset a model was trained on, and how it was drawn, for people (``None``: all of it,
    by length): ``--pct-traj`` under ``--pct-rule`` (dt.data.windows.top_trajectories /
    top_fraction_of_trajectories) and ``--return-weighting`` (dt.data.windows.trajectory_weights)."""
    weighted = ""
    if return_weighting > 0:
        weighted = f", the better episodes drawn more often (return-weighted sampling, {return_weighting:g})"
    if pct_traj >= 1.0:
        return f"all of the dataset{weighted}" if weighted else None
    if pct_rule == "trajectories":
        picked = f"the best {pct_traj:.0%} of the dataset's episodes, ranked by return discounted at 0.99 (CORL's rule)"
    else:
        picked = f"the dataset's best episodes by return, covering {pct_traj:.0%} of its steps (the paper's rule)"
    return picked + weighted
