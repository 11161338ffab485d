"""Worker overhead: a policy-driven game runner against the bare engine loop, and scaling.

1. Decisions/s of the runner's real game path (observation, encoding, policy inference,
   recording, episode assembly and serialisation; self-play with the default model)
   against a bare engine loop (waiting_for → actions → apply) replaying the identical
   actions on the same seeds; interleaved per game. Goal: ratio >= 0.85.
2. Speed-up of the same runner path from 1 to 2 runner processes (each playing the same
   games). Goal: >= 1.8x.

    python bench/worker_overhead.py [--games 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time

import torch

from magerl.game.session import GameSession
from magerl.model.network import PolicyNet
from magerl.telemetry.logs import EventLog
from magerl.telemetry.metrics import MULTIPROC_ENV, Metrics
from magerl.worker.runner import Runner, RunnerConfig

DECKS = ["white-weenie", "green-stompy", "mono-red-burn", "dimir-control"]


def make_runner() -> Runner:
    os.environ.setdefault(MULTIPROC_ENV, tempfile.mkdtemp(prefix="magerl-bench-"))
    torch.set_num_threads(1)
    torch.manual_seed(0)
    metrics = Metrics("worker")
    config = RunnerConfig("tcp://127.0.0.1:9", "tcp://127.0.0.1:9", DECKS, {"self": 1.0, "engine:easy": 1.0})
    runner = Runner(0, config, metrics, EventLog("worker", metrics))
    runner.model = PolicyNet().eval()
    runner.version = 0
    return runner


def runner_game(runner: Runner, game: int) -> int:
    """The runner's path for one self-play game; returns engine actions applied."""
    decks = (runner.decks[game % 4], runner.decks[(game + 1) % 4])
    applied = [0]
    original = GameSession._apply

    def counting(self, seat, action, prompt):
        applied[0] += 1
        original(self, seat, action, prompt)

    GameSession._apply = counting
    try:
        for episode in runner.play_game("self", None, 0, decks, seed=1000 + game):
            episode.to_bytes()
    finally:
        GameSession._apply = original
    return applied[0]


def record_actions(runner: Runner, game: int) -> list:
    applied = []
    original = GameSession._apply

    def spy(self, seat, action, prompt):
        applied.append((seat, action))
        original(self, seat, action, prompt)

    GameSession._apply = spy
    try:
        decks = (runner.decks[game % 4], runner.decks[(game + 1) % 4])
        runner.play_game("self", None, 0, decks, seed=1000 + game)
    finally:
        GameSession._apply = original
    return applied


def bare_game(runner: Runner, game: int, applied: list) -> int:
    decks = (runner.decks[game % 4], runner.decks[(game + 1) % 4])
    g = runner.engine.new_game(decks[0], decks[1], seed=1000 + game, first_player=0)
    for seat, action in applied:
        g.waiting_for()
        g.actions()
        g.apply(seat, action)
    return len(applied)


def _scaling_worker(games: list[int], barrier, out) -> None:
    runner = make_runner()
    runner_game(runner, games[0])  # warm up, then start together
    barrier.wait()
    start = time.time()
    actions = sum(runner_game(runner, g) for g in games)
    out.put((actions, start, time.time()))


def throughput(processes: int, games: list[int]) -> float:
    """Engine actions per second of `processes` runners, each playing `games` (start-up excluded)."""
    ctx = multiprocessing.get_context("spawn")
    out, barrier = ctx.Queue(), ctx.Barrier(processes)
    procs = [ctx.Process(target=_scaling_worker, args=(games, barrier, out)) for _ in range(processes)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(r[0] for r in results) / (max(r[2] for r in results) - min(r[1] for r in results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    runner = make_runner()
    games = [(g, record_actions(runner, g)) for g in range(args.games)]
    total = sum(len(a) for _, a in games)
    best = {"bare": [float("inf")] * len(games), "runner": [float("inf")] * len(games)}
    for r in range(args.rounds):
        for i, (g, applied) in enumerate(games):
            for name in (("bare", "runner") if (r + i) % 2 == 0 else ("runner", "bare")):
                start = time.perf_counter()
                n = bare_game(runner, g, applied) if name == "bare" else runner_game(runner, g)
                best[name][i] = min(best[name][i], time.perf_counter() - start)
                assert n == len(applied), "the policy replay diverged"
    bare_rate, runner_rate = total / sum(best["bare"]), total / sum(best["runner"])
    ratio = runner_rate / bare_rate
    print(f"{len(games)} self-play games, {total} engine actions (policy d_model=64, 2 layers, 1 thread)")
    print(f"bare engine loop : {bare_rate:7.1f} actions/s")
    print(f"policy runner    : {runner_rate:7.1f} actions/s")
    print(f"runner/bare ratio: {ratio:.3f}   goal >= 0.85: {'met' if ratio >= 0.85 else 'NOT met'}")

    scaling_games = list(range(min(args.games, 2)))
    one = throughput(1, scaling_games)
    two = throughput(2, scaling_games)
    print(f"1 runner : {one:7.1f} actions/s;  2 runners: {two:7.1f} actions/s on {os.cpu_count()} cores")
    print(f"speed-up 1 -> 2 runners: {two / one:.2f}x   goal >= 1.8x: {'met' if two / one >= 1.8 else 'NOT met'}")


if __name__ == "__main__":
    main()
