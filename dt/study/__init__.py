"""A recipe study: training candidates x seeds, run N at a time with one thread each, resumable, scored by a rule.

A plan (JSON) names the candidates by their ``python -m dt train`` flags::

    {"seeds": [0, 1], "targets": [3600, 1800], "episodes": 100, "budget_minutes": 60,
     "common": ["--dataset", "hopper-medium", "--model-type", "radt"],
     "candidates": {"playground": ["--preset", "playground"],
                    "floor0": ["--preset", "playground", "--lr-floor", "0"]}}

Each (candidate, seed) is a job in ``OUT/<candidate>/``: the run directory ``seed<S>/`` (``dt train``'s own), its
log ``seed<S>.log``, its state ``seed<S>.job.json`` (wall seconds of every training leg) and, once trained, the
100-episode evaluation of its last checkpoint ``seed<S>.eval.json`` (``dt evaluate --json``). A job with an
evaluation is done; one with a checkpoint resumes it (``--resume``); so a study stopped anywhere (Ctrl-C, a
killed session) continues where it stopped when the same command runs again. Jobs run as ``python -m dt``
processes with one torch thread each (``OMP_NUM_THREADS=1``), ``parallel`` at a time.

The rule (docs/recipes.md, written before the runs): a candidate qualifies when every seed's last three
periodic evaluations lie within :data:`dt.eval.metrics.SETTLED_POINTS` and its seeds' scores at the first target
lie within the same; among qualifying candidates within the budget, the highest mean score at the first target
wins, and ties (within 1 point) go to the shorter run. Standard library only (the jobs import torch, not this).
"""

from dt.study.plan import Plan, load_plan
from dt.study.run import run_study
from dt.study.score import choose, report_markdown, score_study

__all__ = ["Plan", "choose", "load_plan", "report_markdown", "run_study", "score_study"]
