"""Handover episodes: one behaviour policy acts for the first ``T`` steps of an episode, then another takes over.

The bridge between the medium and the expert level in ``full-replay`` (see ``dt.behaviour.generate``): D4RL's
full-replay is the whole replay buffer of one SAC run from random to expert, but the shipped SAC snapshots stop at
the medium policy and the expert is ARS's. An episode in which the expert hops for ``T`` steps (``T`` drawn per episode,
uniform in ``[0, max_switch)``) and the medium policy then carries on until it falls or times out has a return that
grows with ``T``, so a set of them fills the returns between the two levels with behaviour that is a function of
the state and the step (no injected noise that a model could not predict).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np


class NamedRowPolicy(Protocol):
    """What a handover needs of each of its two policies (``dt.behaviour.policy.BehaviourPolicy``,
    ``dt.behaviour.stand.StandPolicy``): a name, the action size, a fingerprint and batched actions."""

    name: str
    act_dim: int

    def fingerprint(self) -> str: ...

    def act_rows(self, obs: np.ndarray, rngs: list[np.random.Generator]) -> tuple[np.ndarray, np.ndarray]: ...


class EpisodeDraws:
    """Per-episode draws and step counts for a policy that acts on many episodes in lockstep.

    An episode is known by its generator (``collect`` gives each episode a fresh one): on its first step ``draw``
    takes the episode's own values from it (so they do not depend on the episodes beside it), and every call to
    :meth:`step` returns each row's draws and how many steps that episode took before. Episodes whose generator is
    no longer passed have ended and are forgotten.
    """

    def __init__(self, draw: Callable[[np.random.Generator], Any]) -> None:
        self._draw = draw
        self._episodes: dict[int, list] = {}  # id(rng) -> [rng, draws, steps taken]

    def step(self, rngs: list[np.random.Generator]) -> list[tuple[Any, int]]:
        live = {id(r) for r in rngs}
        for key in [k for k in self._episodes if k not in live]:
            del self._episodes[key]
        out = []
        for r in rngs:
            ep = self._episodes.get(id(r))
            if ep is None:
                ep = self._episodes[id(r)] = [r, self._draw(r), 0]
            out.append((ep[1], ep[2]))
            ep[2] += 1
        return out

    def draws(self, rng: np.random.Generator) -> Any:
        """The draws of a running episode (None when it is not running)."""
        ep = self._episodes.get(id(rng))
        return None if ep is None else ep[1]


class HandoverPolicy:
    """``first`` for the first ``T`` steps of each episode, then ``then``; a ``dt.behaviour.collect.RowPolicy``.

    ``T`` is the first draw of the episode's own generator, so an episode's content does not depend on the other
    episodes beside it (as for :meth:`BehaviourPolicy.act_rows`). The policy keeps each episode's generator and
    step count while it runs; ``collect`` gives each episode a fresh generator.
    """

    def __init__(self, first: NamedRowPolicy, then: NamedRowPolicy, max_switch: int) -> None:
        if max_switch < 1:
            raise ValueError("max_switch must be at least 1")
        self.first, self.then, self.max_switch = first, then, int(max_switch)
        self.name = f"{first.name}->{then.name}"
        self.act_dim = first.act_dim
        self._episodes = EpisodeDraws(lambda r: int(r.integers(0, self.max_switch)))

    def fingerprint(self) -> str:
        return f"{self.first.fingerprint()}->{self.then.fingerprint()}@{self.max_switch}"

    def act_rows(self, obs: np.ndarray, rngs: list[np.random.Generator]) -> tuple[np.ndarray, np.ndarray]:
        use_first = np.array([t < switch for switch, t in self._episodes.step(rngs)], dtype=bool)
        actions = np.zeros((len(rngs), self.first.act_dim), dtype=np.float32)
        log_probs = np.zeros(len(rngs), dtype=np.float32)
        for mask, policy in ((use_first, self.first), (~use_first, self.then)):
            if mask.any():
                idx = np.flatnonzero(mask)
                actions[idx], log_probs[idx] = policy.act_rows(obs[idx], [rngs[i] for i in idx])
        return actions, log_probs

    def switch_step(self, rng: np.random.Generator) -> int | None:
        """The switch step of a running episode (None when it is not running)."""
        return self._episodes.draws(rng)
