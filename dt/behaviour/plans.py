"""The mixtures behind ``full-replay`` and its variants: which behaviour levels, in which order, how many episodes.

Each plan is a tuple of ``(level, episodes)`` parts (``None``: the whole medium-replay), concatenated in order by
:func:`dt.behaviour.generate.generate_dataset`; part ``j`` is collected with seed ``seed * 10 + j``.
"""

from __future__ import annotations

# full-replay: the returns from random to expert with no gap (every 300-wide return bin of Hopper holds at least 2%
# of the episodes; `python -m dt data card hopper-full-replay`). D4RL's is the whole replay buffer of one SAC run
# up to expert level; the shipped SAC snapshots stop at medium, so the stretch from medium to expert is bridged by
# handover episodes (dt.behaviour.handover: the expert hops for T ~ U[0, HANDOVER_MAX_SWITCH) steps, then the
# medium policy carries on). Parts, in this order, episodes each (the replay part is the whole medium-replay).
# Measured and dropped: 500 "recovery" episodes (medium first, then the expert) did not make a target raised
# mid-episode work (RESULTS.md) and cost 17 points at 3600 (docs/recipes.md).
FULL_REPLAY_PARTS = (("medium-replay", None), ("medium", 1000), ("handover", 1000), ("expert", 100))
HANDOVER_MAX_SWITCH = 700
# wait-replay (Hopper only): the returns from 1,000 to expert come from wait episodes (dt.behaviour.stand: a standing
# controller holds the start pose for T ~ U[0, WAIT_MAX_SWITCH) steps, then the expert runs; 1 in 6 stands the whole
# episode), so a slow hopper is alive and upright and a target raised mid-episode has data to follow; below 1,000
# the medium-replay, and handover episodes (expert, then medium) for a target lowered mid-episode. No medium
# episodes: at returns near 1,000 they would outnumber the standing ones (measured: with full-replay's 1,000 medium
# episodes beside 1,000 wait episodes the model asked for 1,000 hopped and fell). A study, not shipped: no model
# trained on it learnt to start running when the target was raised (RESULTS.md, "a hopper that is slow").
WAIT_MAX_SWITCH = 1200
WAIT_REPLAY_PARTS = (("medium-replay", None), ("handover", 500), ("wait", 2000), ("expert", 100))
# pace-replay (Hopper only): the returns from about 1,150 to expert come from paced episodes (dt.behaviour.pace: the
# expert hops slowly in place, told it runs faster than it does, for T ~ U[0, PACE_MAX_SWITCH) steps, then speeds up
# to its own gait over 150 steps), so at every step of a slow episode the data holds the choice to speed up; below
# them the medium-replay. No handover or medium episodes: at the same returns they run fast and fall, and a model
# asked for a middle return would average a fast and a slow gait.
PACE_REPLAY_PARTS = (("medium-replay", None), ("pace", 2500), ("expert", 100))
REPLAY_PLANS = {"full-replay": FULL_REPLAY_PARTS, "wait-replay": WAIT_REPLAY_PARTS, "pace-replay": PACE_REPLAY_PARTS}

ALGORITHMS = {
    "medium-replay": "SAC replay snapshots",
    "medium": "SAC medium",
    "expert": "ARS expert",
    "handover": "ARS expert -> SAC medium handover",
    "wait": "standing PD -> ARS expert",
    "pace": "ARS expert paced (slow, then its own speed)",
}
