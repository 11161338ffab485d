"""The learned policy as an `Agent`, recording what the learner needs when asked to.

A decision must cost little next to the engine's own ~10 ms: the network runs in numpy
(`inference.NumpyPolicy`) and sampling is done on the handful of candidates rather than
through torch distributions.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from magerl.game.session import Decision
from magerl.model.encoding import Encoded, encode, single
from magerl.model.inference import NumpyPolicy
from magerl.model.network import PolicyNet


def one_core() -> None:
    """Keep a game process's torch and BLAS to one thread each: games run one per core, and
    BLAS threads fighting over a busy core made the policy's matrix products 2× slower."""
    torch.set_num_threads(1)
    threadpool_limits(1)


class PolicyAgent:
    """Samples from the policy (or takes its best candidate when `greedy`)."""

    def __init__(self, model: PolicyNet, *, version: int = 0, greedy: bool = False, seed: int | None = None,
                 record: bool = False, name: str = "policy") -> None:
        self.forward = NumpyPolicy(model)  # a copy of the weights: the agent plays its game with one version
        self.version = version
        self.greedy = greedy
        self.record = record
        self.name = name
        self._rng = np.random.default_rng(seed)
        self.steps: list[tuple[Encoded, int, float, float, int]] = []  # (encoded, action, logp, value, version)

    def act(self, decision: Decision) -> int:
        encoded = encode(decision.observation, decision.candidates)
        logits, value = self.forward(single(encoded))
        scores = logits.astype(np.float64)
        scores = scores - scores.max()
        logp = scores - np.log(np.exp(scores).sum())
        if self.greedy:
            action = int(np.argmax(logp))
        else:
            cumulative = np.cumsum(np.exp(logp))
            action = min(int(np.searchsorted(cumulative, self._rng.random() * cumulative[-1], side="right")),
                         len(logp) - 1)
        if self.record:
            self.steps.append((encoded, action, float(logp[action]), value, self.version))
        return action

    def take_steps(self) -> list[tuple[Encoded, int, float, float, int]]:
        steps, self.steps = self.steps, []
        return steps


@lru_cache(maxsize=8)
def _load(path: str, deck: str | None = None) -> tuple[PolicyNet, int]:
    from magerl.learner.checkpoint import load_policy

    return load_policy(path, deck)


def policy_agent(path: str, seed: int | None = None, greedy: bool = False, deck: str | None = None) -> PolicyAgent:
    """`policy:PATH` (sampling with `seed`) or `greedy:PATH` of the command line: a checkpoint's
    policy; from a policy set, the network for `deck`."""
    model, version = _load(path, deck)
    return PolicyAgent(model, version=version, seed=seed, greedy=greedy,
                       name=f"{'greedy' if greedy else 'policy'}:{path}")
