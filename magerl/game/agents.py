"""Agents: anything that picks a candidate index for a decision.

The learned policy implements the same `Agent` protocol later; the engine's built-in AI
(`EngineAIAgent`) is the fixed opponent ladder, VeryEasy..Hard.
"""

from __future__ import annotations

import random
from typing import Callable, Protocol, runtime_checkable

from magerl.game.session import DIFFICULTIES, Decision


@runtime_checkable
class Agent(Protocol):
    """Chooses among a decision's legal candidates."""

    name: str

    def act(self, decision: Decision) -> int:
        """Return an index into `decision.candidates`."""
        ...


class RandomAgent:
    """Uniform over the legal candidates (combat: uniform per creature)."""

    def __init__(self, seed: int | None = None) -> None:
        self.name = "random"
        self._rng = random.Random(seed)

    def act(self, decision: Decision) -> int:
        return self._rng.randrange(len(decision.candidates))


class EngineAIAgent:
    """The engine's built-in AI at one difficulty, with an optional epsilon of random play.

    Epsilon helps where the weak AIs stall (Easy/VeryEasy sometimes fail to play a land).
    """

    def __init__(self, difficulty: str, epsilon: float = 0.0, seed: int | None = None) -> None:
        key = difficulty.lower()
        if key not in DIFFICULTIES:
            raise ValueError(f"unknown difficulty {difficulty!r} (choose from {', '.join(DIFFICULTIES)})")
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be within 0..1, got {epsilon}")
        self.difficulty = key
        self.epsilon = epsilon
        self.name = f"engine:{key}" + (f":{epsilon:g}" if epsilon else "")
        self._rng = random.Random(seed)

    def act(self, decision: Decision) -> int:
        if self.epsilon and self._rng.random() < self.epsilon:
            return self._rng.randrange(len(decision.candidates))
        return decision.engine_choice(self.difficulty)


def make_agent(spec: str, seed: int | None = None, deck: str | None = None) -> Agent:
    """Build an agent from its command-line spec, for a game in which it plays `deck`.

    `random` | `engine:DIFFICULTY[:EPSILON]` (e.g. `engine:easy`, `engine:veryeasy:0.05`)
    | `policy:PATH` (a checkpoint folder, or a run folder: its newest checkpoint; `default`
    is the shipped one; a policy set: its network for `deck`), sampling its moves
    | `greedy:PATH`, the same taking its likeliest move.
    """
    kind, _, rest = spec.strip().partition(":")
    if kind in ("policy", "greedy") and rest:
        from magerl.model.agent import policy_agent  # torch is only needed here

        return policy_agent(rest, seed, greedy=kind == "greedy", deck=deck)
    if kind == "random" and not rest:
        return RandomAgent(seed)
    if kind == "engine" and rest:
        difficulty, _, eps = rest.partition(":")
        try:
            epsilon = float(eps) if eps else 0.0
        except ValueError:
            raise ValueError(f"agent {spec!r}: epsilon must be a number") from None
        return EngineAIAgent(difficulty, epsilon, seed)
    raise ValueError(
        f"unknown agent {spec!r} (use random, engine:veryeasy|easy|medium|hard|veryhard[:EPSILON], policy:PATH "
        "or greedy:PATH)"
    )


def parse_mix(spec: str, check: Callable[[str], object] = make_agent) -> dict[str, float]:
    """`engine:medium=0.5,random=0.5` -> {name: weight}; `check` raises ValueError on a bad name."""
    mix: dict[str, float] = {}
    for part in spec.split(","):
        name, eq, weight = part.strip().rpartition("=")
        if not eq:
            raise ValueError(f"opponent {part.strip()!r}: write AGENT=WEIGHT")
        check(name)
        try:
            mix[name] = float(weight)
        except ValueError:
            raise ValueError(f"opponent {name!r}: weight {weight!r} is not a number") from None
        if mix[name] < 0:
            raise ValueError(f"opponent {name!r}: negative weight")
    if sum(mix.values()) <= 0:
        raise ValueError("the opponent weights add up to zero")
    return mix
