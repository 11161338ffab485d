"""Telemetry overhead: the cost of a record call and of a scrape, against a game decision.

Measured side by side in one run: random-play games through the adapter give the time of
one decision and the decisions per episode; then the record calls a runner makes per
episode, and a scrape of a worker pod with every label set populated and the files of
NUM_GAME_RUNNERS runner processes. Goal: instrumentation <= 1% of a decision's time.

    python bench/telemetry_overhead.py [--games 4] [--runners 8]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from prometheus_client import generate_latest

from magerl.game.agents import RandomAgent
from magerl.game.cards import CardDatabase
from magerl.game.decks import load_deck
from magerl.game.play import play_game
from magerl.game.session import GameSession
from magerl.telemetry.catalogue import ABORT_REASONS, DROP_REASONS, ERROR_KINDS, OPPONENTS, QUEUES
from magerl.telemetry.exporter import scrape_registry
from magerl.telemetry.metrics import MULTIPROC_ENV, Metrics


def decision_cost(games: int) -> tuple[float, float]:
    """Seconds per agent decision and decisions per episode, from real games."""
    cards = CardDatabase.load()
    engine = cards.engine()
    decks = (load_deck("white-weenie", cards).cards(), load_deck("green-stompy", cards).cards())
    seconds = decisions = 0.0
    for seed in range(games):
        result = play_game(GameSession(engine, decks, seed=seed), [RandomAgent(seed), RandomAgent(seed + 1)])
        seconds += result.seconds
        decisions += sum(result.decisions)
    return seconds / decisions, decisions / games


def per_call(fn, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=4)
    parser.add_argument("--runners", type=int, default=8)
    args = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="magerl-bench-"))
    os.environ[MULTIPROC_ENV] = str(directory)
    try:
        # One object per process: the learner and evaluator label sets are populated too,
        # as if those pods' files were merged here (a worst case for scrape size).
        worker = Metrics("worker", extra_roles=("learner", "evaluator"))
        learner = evaluator = worker

        per_decision, decisions_per_episode = decision_cost(args.games)

        n = 20_000
        calls = {
            "record_episode_completed": per_call(
                lambda i: worker.record_episode_completed(i % args.runners, seconds=2.0, turns=15, decisions=160), n
            ),
            "record_error": per_call(lambda i: worker.record_error("engine", "panic"), n),
            "set_policy_version": per_call(lambda i: worker.set_policy_version(i), n),
            "record_training_batch": per_call(lambda i: learner.record_training_batch(512, 1.0), n),
        }
        # every label set populated
        for component, kinds in ERROR_KINDS.items():
            for kind in kinds:
                worker.record_error(component, kind)
        for reason in ABORT_REASONS:
            worker.record_episode_aborted(reason)
        for reason in DROP_REASONS:
            worker.record_episode_dropped(reason)
        for queue in QUEUES:
            worker.set_queue_depth(queue, 1)
        for opponent in OPPONENTS:
            evaluator.set_win_rate(opponent, 0.5, games=10)
        learner.record_gpu_memory(1, 2, gpu=0)
        # the files of a pod of N runner processes (one set per process id)
        for path in list(directory.glob("*.db")):
            prefix, _, _ = path.name.rpartition("_")
            for fake_pid in range(1, args.runners):
                shutil.copy(path, directory / f"{prefix}_{900000 + fake_pid}.db")
        registry = scrape_registry(str(directory))
        body = generate_latest(registry)
        scrapes = 50
        start = time.perf_counter()
        for _ in range(scrapes):
            generate_latest(registry)
        scrape = (time.perf_counter() - start) / scrapes
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    print(f"game decision (random play, adapter): {per_decision * 1e3:.2f} ms; {decisions_per_episode:.0f} decisions per episode")
    for name, seconds in calls.items():
        print(f"{name:<26} {seconds * 1e6:6.1f} us per call")
    per_episode = calls["record_episode_completed"] + calls["set_policy_version"]
    call_share = per_episode / decisions_per_episode / per_decision
    print(f"scrape of {len(body.splitlines())} lines from {args.runners} processes: {scrape * 1e3:.1f} ms")
    scrape_share = scrape / 15.0  # one scrape every 15 s takes this share of one core
    print(f"record calls per decision (episode calls / decisions): {call_share:.5%} of a decision's time")
    print(f"scraping every 15 s: {scrape_share:.4%} of one core")
    total = call_share + scrape_share
    print(f"instrumentation share of game time: {total:.4%}   goal <= 1%: {'met' if total <= 0.01 else 'NOT met'}")


if __name__ == "__main__":
    main()
