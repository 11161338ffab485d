"""Decision latency: the policy's time to choose, part by part, beside the engine AI's.

Plays the policy (default: the shipped one) against engine:easy on one core (one torch
and one BLAS thread) and times each of the policy's decisions whole, as `act()` runs it,
then part by part: the observation (as built when it is not reused; and, side by side,
without the battlefield memo of `engine_json`), the encoding, and
the network, both in numpy (what `act()` uses) and in PyTorch side by side. The engine
AI's time to choose is measured in the same games. Each `--versus` policy's numpy network
is timed on the same decisions, so a larger model's cost is a ratio measured side by side
(the observation and encoding do not depend on the model). Goal: policy ≤ 2 ms per
decision on one core; the ratios (numpy to torch network, policy to engine AI, one
network to another) are the figures that survive a noisy machine.

With `--deck D` the policy plays D in every game (its own network, from a policy set),
against each deck in turn: decision time grows with the board, so a slow deck's games
are where the goal is tightest.

    python bench/decision_latency.py [--policy default] [--versus PATH ...] [--games 4] [--deck D]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from magerl.game.agents import EngineAIAgent
from magerl.game.cards import CardDatabase
from magerl.game.decks import load_deck
from magerl.game.observation import ObservationCache, observe
from magerl.game.session import GameSession
from magerl.model.agent import PolicyAgent, _load, one_core
from magerl.model.encoding import encode, single
from magerl.model.inference import NumpyPolicy
from magerl.model.network import to_tensors

DECKS = ["white-weenie", "green-stompy", "mono-red-burn", "dimir-control"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="default")
    parser.add_argument("--versus", action="append", default=[], metavar="POLICY",
                        help="another checkpoint whose network is timed on the same decisions")
    parser.add_argument("--games", type=int, default=4)
    parser.add_argument("--deck", choices=DECKS, default=None,
                        help="the policy plays this deck in every game (default: each deck in turn)")
    args = parser.parse_args()
    one_core()
    cards = CardDatabase.load(None)
    engine = cards.engine()
    decks = [load_deck(d, cards).cards() for d in DECKS]
    model, version = _load(args.policy, args.deck)
    agent = PolicyAgent(model, version=version, seed=0)
    others = {f"network (numpy) {name}": NumpyPolicy(_load(name)[0]) for name in args.versus}
    teacher = EngineAIAgent("easy")
    reused = 0  # decisions whose observation was the previous one (no action applied since)
    parts: dict[str, list[float]] = {k: [] for k in ("whole act()", "observation", "observation, no memo", "encode",
                                                      "network (numpy)", "network (torch)", "engine:easy act()",
                                                      *others)}
    for game in range(args.games):
        mine = decks[DECKS.index(args.deck)] if args.deck else decks[game % 4]
        session = GameSession(engine, (mine, decks[(game + 1) % 4]), seed=100 + game)
        while (decision := session.next_decision()) is not None:
            if decision.seat == 1:
                start = time.perf_counter()
                index = teacher.act(decision)
                parts["engine:easy act()"].append(time.perf_counter() - start)
                session.choose(decision, index)
                continue
            cache, seen = session._seen.copy(), session._observed  # the session's caches before act()
            t0 = time.perf_counter()
            index = agent.act(decision)
            t1 = time.perf_counter()
            reused += seen is not None and session._observed is seen
            unmemoized = ObservationCache(dict(cache.zones))  # as before the memo: the battlefield made each time
            timed = [("observation", cache), ("observation, no memo", unmemoized)]
            for name, looked in timed[:: 1 if len(parts["observation"]) % 2 else -1]:  # alternate which goes first
                start = time.perf_counter()
                observation = observe(session.game, decision.seat, decision.prompt, session.first_player, looked)
                parts[name].append(time.perf_counter() - start)
            t2 = time.perf_counter()
            batch = single(encode(observation, decision.candidates))
            t3 = time.perf_counter()
            agent.forward(batch)
            t4 = time.perf_counter()
            with torch.inference_mode():
                model(to_tensors(batch))
            t5 = time.perf_counter()
            for name, forward in others.items():
                start = time.perf_counter()
                forward(batch)
                parts[name].append(time.perf_counter() - start)
            for name, a, b in (("whole act()", t0, t1), ("encode", t2, t3),
                               ("network (numpy)", t3, t4), ("network (torch)", t4, t5)):
                parts[name].append(b - a)
            session.choose(decision, index)
    print(f"{len(parts['whole act()'])} policy decisions ({reused} reused the previous observation), "
          f"{len(parts['engine:easy act()'])} engine:easy decisions, {args.games} games, 1 thread"
          + (f", the policy playing {args.deck}" if args.deck else ""))
    width = max(map(len, parts))
    for name, values in parts.items():
        ms = np.asarray(values) * 1000
        print(f"  {name:<{width}} mean {ms.mean():6.3f} ms   p50 {np.median(ms):6.3f}   p99 {np.percentile(ms, 99):7.3f}")
    mean = {name: float(np.mean(values)) for name, values in parts.items()}
    print(f"observation with / without the battlefield memo: {mean['observation'] / mean['observation, no memo']:.3f}")
    print(f"network numpy / torch: {mean['network (numpy)'] / mean['network (torch)']:.3f}")
    for name in others:
        print(f"{name.removeprefix('network (numpy) ')} / {args.policy} network: "
              f"{mean[name] / mean['network (numpy)']:.3f}; whole act() with it "
              f"≈ {(mean['whole act()'] - mean['network (numpy)'] + mean[name]) * 1000:.2f} ms")
    print(f"policy / engine:easy time per decision: {mean['whole act()'] / mean['engine:easy act()']:.3f}  "
          f"(policy {mean['whole act()'] * 1000:.2f} ms; goal ≤ 2 ms)")

if __name__ == "__main__":
    main()
