"""Behaviour policies (SAC on Hopper) for generating D4RL-style datasets.

`load_behaviour_policy("random" | "medium" | "expert")` returns a batched numpy policy; the shipped
snapshots live in ``dt/behaviour/policies/``. Training: ``python -m dt.behaviour.sac``.
"""

from dt.behaviour.policy import BehaviourPolicy, evaluate, load_behaviour_policy

__all__ = ["BehaviourPolicy", "evaluate", "load_behaviour_policy"]
