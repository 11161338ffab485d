"""Adapter overhead: decisions/s of a bare engine loop vs the magerl adapter loop.

Both loops replay identical games (same seeds, same actions): a first, untimed pass
records every action the adapter applies with a seeded RandomAgent; then, alternating
A/B in each round to share the machine's noise, the bare loop (waiting_for → actions →
apply, the least any driver does) replays those actions and the adapter loop plays the
same games again. Prints the ratio adapter/bare; goal ≥ 0.95 (adapter costs ≤ 5%).

    python bench/engine_speed.py [--games 6] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from magerl.game.agents import RandomAgent
from magerl.game.cards import CardDatabase
from magerl.game.decks import load_deck, standard_decks
from magerl.game.play import play_game
from magerl.game.session import GameSession


def record(engine, decks, seed):
    """Play one adapter game and return the (seat, action) pairs it applied."""
    session = GameSession(engine, decks, seed=seed)
    applied = []
    original = session._apply

    def spy(seat, action, prompt):
        applied.append((seat, action))
        original(seat, action, prompt)

    session._apply = spy
    result = play_game(session, [RandomAgent(seed), RandomAgent(seed + 1)])
    return applied, result


def bare_loop(engine, decks, seed, applied) -> int:
    game = engine.new_game(decks[0], decks[1], seed=seed, first_player=0)
    for seat, action in applied:
        prompt = game.waiting_for()
        data = prompt["data"]
        actor = data["pending"][0]["player"] if prompt["type"] == "MulliganDecision" else data["player"]
        assert actor == seat
        game.actions()
        game.apply(actor, action)
    assert game.waiting_for()["type"] == "GameOver"
    return len(applied)


def adapter_loop(engine, decks, seed) -> int:
    session = GameSession(engine, decks, seed=seed)
    result = play_game(session, [RandomAgent(seed), RandomAgent(seed + 1)])
    return result.prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    cards = CardDatabase.load()
    engine = cards.engine()
    names = sorted(standard_decks())
    games = []
    for i in range(args.games):
        decks = (load_deck(names[i % 4], cards).cards(), load_deck(names[(i + 1) % 4], cards).cards())
        applied, result = record(engine, decks, seed=1000 + i)
        if result.aborted is None:
            games.append((decks, 1000 + i, applied))
    total = sum(len(a) for _, _, a in games)
    print(f"{len(games)} games, {total} engine actions each pass (random play, standard decks)")

    # Interleave per game, alternating which loop goes first: the machine's speed drifts
    # by +-20% within a minute, so whole-pass timings would compare different machines.
    best = {"bare": [float("inf")] * len(games), "adapter": [float("inf")] * len(games)}
    pair_ratios = []
    for r in range(args.rounds):
        for g, (decks, seed, applied) in enumerate(games):
            took = {}
            for name in (("bare", "adapter") if (r + g) % 2 == 0 else ("adapter", "bare")):
                start = time.perf_counter()
                n = bare_loop(engine, decks, seed, applied) if name == "bare" else adapter_loop(engine, decks, seed)
                took[name] = time.perf_counter() - start
                assert n == len(applied), "the adapter replay diverged"
                best[name][g] = min(best[name][g], took[name])
            pair_ratios.append(took["bare"] / took["adapter"])
        print(f"round {r + 1}/{args.rounds} done")
    bare_rate = total / sum(best["bare"])
    adapter_rate = total / sum(best["adapter"])
    ratio = adapter_rate / bare_rate
    print(f"bare engine loop : {bare_rate:7.0f} actions/s (best of {args.rounds} per game)")
    print(f"magerl adapter   : {adapter_rate:7.0f} actions/s (best of {args.rounds} per game)")
    print(f"paired ratios    : median {statistics.median(pair_ratios):.3f}, "
          f"range {min(pair_ratios):.3f}..{max(pair_ratios):.3f} over {len(pair_ratios)} pairs")
    print(f"adapter/bare speed ratio: {ratio:.3f}   goal >= 0.95: {'met' if ratio >= 0.95 else 'NOT met'}")


if __name__ == "__main__":
    main()
