"""Soft Actor-Critic's learner (Haarnoja et al. 2018): twin critic, replay buffer, and the agent's update.

The training run around it (env stepping, checkpoints, snapshots, CLI) is :mod:`dt.behaviour.sac`. Standard
hyperparameters (256x256 MLPs, Adam 3e-4, gamma 0.99, tau 0.005, batch 256, automatic entropy tuning towards
-act_dim). Built to be fast:

- both critics live in one stacked weight tensor and run as a single batched matmul (``torch.baddbmm``), and the
  actor's loss reads the critics through detached weights, so no critic weight gradients are computed for it;
- the transitions the update reads live in one float32 tensor on the training device, and minibatch indices are
  drawn there with torch's RNG, so a CUDA update needs no host-to-device copy beyond the newest row;
- on CUDA the whole update (sampling, three losses, three backward passes, fused Adam steps, Polyak averaging)
  and the acting forward are each captured once as a CUDA graph and replayed (``cuda_graphs=False`` turns that off).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from dt.behaviour.policy import Actor, squash_log_std, tanh_gaussian


class TwinCritic(nn.Module):
    """``n`` Q-networks (in -> h -> h -> 1) with weights stacked on a leading axis and run by one baddbmm."""

    w1: nn.Parameter  # (n, in, h); set below by name
    b1: nn.Parameter  # (n, 1, h)
    w2: nn.Parameter  # (n, h, h)
    b2: nn.Parameter  # (n, 1, h)
    w3: nn.Parameter  # (n, h, 1)
    b3: nn.Parameter  # (n, 1, 1)

    def __init__(self, in_dim: int, hidden: int = 256, n: int = 2) -> None:
        super().__init__()
        shapes = [(in_dim, hidden), (hidden, hidden), (hidden, 1)]
        for k, (fan_in, fan_out) in enumerate(shapes, start=1):
            # nn.Linear's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases.
            bound = 1.0 / math.sqrt(fan_in)
            setattr(self, f"w{k}", nn.Parameter(torch.empty(n, fan_in, fan_out).uniform_(-bound, bound)))
            setattr(self, f"b{k}", nn.Parameter(torch.empty(n, 1, fan_out).uniform_(-bound, bound)))

    def weights(self) -> list[torch.Tensor]:
        return [self.w1, self.b1, self.w2, self.b2, self.w3, self.b3]

    @staticmethod
    def q(weights: list[torch.Tensor], obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Q-values (n, B) for obs (B, obs_dim) and act (B, act_dim)."""
        w1, b1, w2, b2, w3, b3 = weights
        x = torch.cat([obs, act], dim=-1).unsqueeze(0).expand(w1.shape[0], -1, -1)  # (n, B, in)
        h = torch.baddbmm(b1, x, w1).relu_()  # (n, B, h)
        h = torch.baddbmm(b2, h, w2).relu_()  # (n, B, h)
        return torch.baddbmm(b3, h, w3).squeeze(-1)  # (n, B)


# ---------------------------------------------------------------------------------------------- replay buffer


class ReplayBuffer:
    """Preallocated transitions plus the MuJoCo state (qpos, qvel) before each step, for medium-replay.

    ``data`` (numpy) keeps everything D4RL stores; ``rows`` (float32, on the training device) keeps what the
    update reads, one row ``[obs | act | reward | next_obs | not_done]`` per transition.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, nq: int, nv: int, device: torch.device) -> None:
        self.size, self.obs_dim, self.act_dim = 0, obs_dim, act_dim
        self.data = {
            "observations": np.zeros((capacity, obs_dim), np.float32),
            "actions": np.zeros((capacity, act_dim), np.float32),
            "rewards": np.zeros(capacity, np.float32),
            "next_observations": np.zeros((capacity, obs_dim), np.float32),
            "terminals": np.zeros(capacity, bool),
            "timeouts": np.zeros(capacity, bool),
            "action_log_probs": np.zeros(capacity, np.float32),
            "qpos": np.zeros((capacity, nq), np.float64),
            "qvel": np.zeros((capacity, nv), np.float64),
        }
        self.width = 2 * obs_dim + act_dim + 2
        self.rows = torch.zeros(capacity, self.width, device=device)
        self.size_t = torch.zeros((), device=device)  # the row count, read by the (graph-captured) sampler
        # Pinned staging ring for the newest row, so its copy to the GPU never waits for queued updates.
        pin = device.type == "cuda"
        self._stage = torch.zeros(64, self.width, pin_memory=pin)
        self._row = np.zeros(self.width, np.float32)

    def add(self, **row) -> None:
        i = self.size
        for k, v in row.items():
            self.data[k][i] = v
        o, a = self.obs_dim, self.act_dim
        r = self._row
        r[:o], r[o : o + a], r[o + a] = row["observations"], row["actions"], row["rewards"]
        r[o + a + 1 : 2 * o + a + 1], r[-1] = row["next_observations"], 0.0 if row["terminals"] else 1.0
        slot = i % len(self._stage)
        if slot == 0 and self._stage.is_pinned():
            torch.cuda.current_stream().synchronize()  # the ring's earlier copies are done before it is reused
        stage = self._stage[slot]
        stage.numpy()[:] = r
        self.rows[i].copy_(stage, non_blocking=True)
        self.size += 1
        self.size_t.fill_(self.size)

    def sample(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        """obs, act, rew, next_obs, not_done drawn uniformly with torch's RNG on the buffer's device."""
        idx = (torch.rand(batch_size, device=self.rows.device) * self.size_t).long()  # (B,) in [0, size)
        b = self.rows[idx]  # (B, width)
        o, a = self.obs_dim, self.act_dim
        return b[:, :o], b[:, o : o + a], b[:, o + a], b[:, o + a + 1 : 2 * o + a + 1], b[:, -1]

    def rows_of(self, start: int, end: int) -> dict[str, np.ndarray]:
        return {k: v[start:end] for k, v in self.data.items()}

    def restore(self, start: int, arrays: dict[str, np.ndarray]) -> None:
        """Put saved numpy rows back at ``start`` and rebuild their training rows."""
        end = start + len(arrays["rewards"])
        for k in self.data:
            self.data[k][start:end] = arrays[k]
        d = self.data
        rows = np.concatenate(
            [
                d["observations"][start:end],
                d["actions"][start:end],
                d["rewards"][start:end, None],
                d["next_observations"][start:end],
                1.0 - d["terminals"][start:end, None].astype(np.float32),
            ],
            axis=1,
        )
        self.rows[start:end] = torch.from_numpy(rows).to(self.rows.device)


# ------------------------------------------------------------------------------------------------------ agent


class SAC:
    """Actor, twin critics with targets, learned temperature, and their optimisers."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        device: torch.device,
        *,
        hidden: int = 256,
        lr: float = 3e-4,
        gamma: float = 0.99,
        tau: float = 0.005,
        batch_size: int = 256,
        cuda_graphs: bool = True,
    ) -> None:
        self.device, self.gamma, self.tau, self.batch_size = device, gamma, tau, batch_size
        self.actor = Actor(obs_dim, act_dim, hidden).to(device)
        self.critic = TwinCritic(obs_dim + act_dim, hidden).to(device)
        self.target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.zeros(1, device=device, requires_grad=True)
        self.target_entropy = -float(act_dim)
        cuda = device.type == "cuda"
        # On CUDA the optimiser steps are captured in the update's graph, so their state lives on the GPU.
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=lr, foreach=True, capturable=cuda)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=lr, foreach=True, capturable=cuda)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=lr, foreach=True, capturable=cuda)
        self.stats: dict[str, torch.Tensor] = {}
        self.use_graphs = cuda and cuda_graphs
        self.updates = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._act_graph: torch.cuda.CUDAGraph | None = None
        self._obs_in = torch.zeros(1, obs_dim, device=device)
        self._act_out = torch.zeros(1, act_dim + 1, device=device)
        # On CPU, acting reads the actor through numpy views of its parameters (the optimiser updates them in
        # place): a batch-of-one forward in numpy costs a tenth of torch's per-op dispatch.
        self._views = None if cuda else {k: v.detach().numpy() for k, v in self.actor.state_dict().items()}

    def _update(self, buffer: ReplayBuffer) -> None:
        obs, act, rew, next_obs, not_done = buffer.sample(self.batch_size)
        alpha = self.log_alpha.detach().exp()
        # Critics: soft Bellman target from the min of the two target critics.
        with torch.no_grad():
            next_act, next_logp = self.actor.sample(next_obs)
            next_q = TwinCritic.q(self.target.weights(), next_obs, next_act).min(0).values - alpha * next_logp
            y = rew + self.gamma * not_done * next_q  # (B,)
        q = TwinCritic.q(self.critic.weights(), obs, act)  # (2, B)
        critic_loss = (q - y).pow(2).mean(1).sum()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        # Actor: the critics' weights are detached, so only d(Q)/d(action) flows back.
        new_act, logp = self.actor.sample(obs)
        frozen = [w.detach() for w in self.critic.weights()]
        actor_loss = (alpha * logp - TwinCritic.q(frozen, obs, new_act).min(0).values).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        # Temperature: push the policy entropy towards -act_dim.
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(self.target.weights(), self.critic.weights(), self.tau)
        self.stats = {
            "critic_loss": critic_loss.detach(),
            "actor_loss": actor_loss.detach(),
            "alpha": alpha,
            "entropy": -logp.detach().mean(),
        }

    def _act(self) -> None:
        a, lp = self.actor.sample(self._obs_in)
        self._act_out[:, :-1] = a
        self._act_out[:, -1] = lp

    def update(self, buffer: ReplayBuffer) -> None:
        """One SAC update on a minibatch drawn from ``buffer`` (a CUDA graph replay once captured)."""
        self.updates += 1
        if self._graph is not None:
            self._graph.replay()
            return
        if not self.use_graphs:
            self._update(buffer)
            return
        # PyTorch's whole-network capture recipe: warm up on a side stream, then capture and replay.
        if self.updates <= 3:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._update(buffer)
                with torch.no_grad():
                    self._act()
            torch.cuda.current_stream().wait_stream(side)
            return
        try:
            for o in (self.actor_opt, self.critic_opt, self.alpha_opt):
                o.zero_grad(set_to_none=True)
            graph, act_graph = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._update(buffer)
            with torch.no_grad(), torch.cuda.graph(act_graph):
                self._act()
            self._graph, self._act_graph = graph, act_graph
            graph.replay()
            print("CUDA graphs captured: update and acting", flush=True)
        except RuntimeError as e:  # an op this torch cannot capture: run eagerly, slower but the same maths
            print(f"CUDA graph capture failed ({str(e).splitlines()[0]}); continuing eagerly", flush=True)
            self.use_graphs = False
            torch.cuda.synchronize()
            self._update(buffer)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> tuple[np.ndarray, float]:
        """A stochastic action (act_dim,) and its log density for one observation."""
        if self._views is not None:
            v = self._views
            h = np.maximum(v["l1.weight"] @ obs.astype(np.float32) + v["l1.bias"], 0.0)
            h = np.maximum(v["l2.weight"] @ h + v["l2.bias"], 0.0)
            mean, log_std = np.split(v["head.weight"] @ h + v["head.bias"], 2)
            eps = torch.randn(len(mean)).numpy()  # torch's RNG, like the updates' noise, so resume stays exact
            action, log_prob = tanh_gaussian(mean, squash_log_std(log_std), eps)
            return action.astype(np.float32), float(log_prob)
        self._obs_in.copy_(torch.from_numpy(obs).float().unsqueeze(0))
        if self._act_graph is not None:
            self._act_graph.replay()
        else:
            self._act()
        out = self._act_out[0].cpu().numpy()  # (act_dim + 1,); the only sync per env step on CUDA
        return out[:-1].copy(), float(out[-1])

    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "target": self.target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "alpha_opt": self.alpha_opt.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.target.load_state_dict(state["target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])
