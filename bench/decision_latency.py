"""Decision latency: the policy's time to choose, part by part, beside the engine AI's.

Plays the policy (default: the shipped one) against engine:easy on one core (one torch
thread) and times, at each of the policy's decisions, the observation, the encoding,
the network and the sampling.
The engine AI's time to choose is measured in the same games. Goal: policy ≤ 2 ms per
decision on one core; the ratio to the engine AI's time is the figure that survives a
noisy machine.

    python bench/decision_latency.py [--policy default] [--games 4]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from magerl.game.agents import EngineAIAgent
from magerl.game.cards import CardDatabase
from magerl.game.decks import load_deck
from magerl.game.session import GameSession
from magerl.model.agent import PolicyAgent, _load
from magerl.model.encoding import encode, single
from magerl.model.network import to_tensors

DECKS = ["white-weenie", "green-stompy", "mono-red-burn", "dimir-control"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="default")
    parser.add_argument("--games", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cards = CardDatabase.load(None)
    engine = cards.engine()
    decks = [load_deck(d, cards).cards() for d in DECKS]
    model, version = _load(args.policy)
    agent = PolicyAgent(model, version=version, seed=0)
    teacher = EngineAIAgent("easy")
    parts: dict[str, list[float]] = {k: [] for k in ("observation", "encode", "to_tensors", "network",
                                                      "whole act()", "engine:easy act()")}
    with torch.inference_mode():
        for game in range(args.games):
            session = GameSession(engine, (decks[game % 4], decks[(game + 1) % 4]), seed=100 + game)
            while (decision := session.next_decision()) is not None:
                if decision.seat == 1:
                    start = time.perf_counter()
                    index = teacher.act(decision)
                    parts["engine:easy act()"].append(time.perf_counter() - start)
                    session.choose(decision, index)
                    continue
                t0 = time.perf_counter()
                observation = decision.observation  # cached on the decision: act() below reuses it
                t1 = time.perf_counter()
                encoded = encode(observation, decision.candidates)
                t2 = time.perf_counter()
                inputs = to_tensors(single(encoded))
                t3 = time.perf_counter()
                model(inputs)
                t4 = time.perf_counter()
                del decision.__dict__["observation"]  # time act() from scratch
                index = agent.act(decision)
                t5 = time.perf_counter()
                for name, a, b in (("observation", t0, t1), ("encode", t1, t2), ("to_tensors", t2, t3),
                                   ("network", t3, t4), ("whole act()", t4, t5)):
                    parts[name].append(b - a)
                session.choose(decision, index)
    print(f"{len(parts['whole act()'])} policy decisions, {len(parts['engine:easy act()'])} engine:easy decisions, "
          f"{args.games} games, 1 thread")
    for name, values in parts.items():
        ms = np.asarray(values) * 1000
        print(f"  {name:<20} mean {ms.mean():6.3f} ms   p50 {np.median(ms):6.3f}   p99 {np.percentile(ms, 99):7.3f}")
    policy, easy = np.mean(parts["whole act()"]), np.mean(parts["engine:easy act()"])
    print(f"policy / engine:easy time per decision: {policy / easy:.3f}  (policy {policy * 1000:.2f} ms; goal ≤ 2 ms)")


if __name__ == "__main__":
    main()
