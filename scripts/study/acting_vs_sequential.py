"""Study script for docs/recipes.md (see scripts/study/README.md)."""

import sys

import gymnasium as gym
import numpy as np
import torch

from dt.checkpoint.store import load_checkpoint
from dt.eval.evaluate import evaluate

torch.set_num_threads(1)
ck = load_checkpoint(sys.argv[1])
print("step", ck.step)
m = ck.model
m.eval()
res = evaluate(ck, [3600.0], episodes=4, seed=100)[0]
print("ours   ", np.round(res.returns, 1), res.lengths)
mean, std = np.array(ck.state_mean), np.array(ck.state_std)
K = 20


def corl_episode(seed):
    env = gym.make("Hopper-v4")
    o, _ = env.reset(seed=seed)
    S = torch.zeros(1, 1001, 11)
    A = torch.zeros(1, 1000, 3)
    R = torch.zeros(1, 1001)
    T = torch.arange(1000).view(1, -1)
    S[:, 0] = torch.as_tensor((o - mean) / std)
    R[:, 0] = 3.6
    ret = 0.0
    for step in range(1000):
        s = S[:, : step + 1][:, -K:]
        a = A[:, : step + 1][:, -K:]
        r = R[:, : step + 1][:, -K:]
        t = T[:, : step + 1][:, -K:]
        with torch.no_grad():
            out = m.hf(
                states=s,
                actions=a,
                returns_to_go=r.unsqueeze(-1),
                timesteps=t,
                attention_mask=torch.ones(1, s.shape[1]),
                return_dict=True,
            )
        act = out.action_preds[0, -1].numpy()
        o, rew, term, trunc, _ = env.step(act)
        A[:, step] = torch.as_tensor(act)
        S[:, step + 1] = torch.as_tensor((o - mean) / std)
        R[:, step + 1] = R[:, step] - rew / 1000
        ret += rew
        if term:
            return ret, step + 1
    return ret, 1000


print("hf-seq ", [tuple(np.round(corl_episode(100 + j), 1)) for j in range(4)])
