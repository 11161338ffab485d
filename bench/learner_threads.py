"""Learner CPU threads beside busy game runners: the cores the runners leave vs torch's default.

`magerl train` runs the learner on the machine its game runners keep busy. A PPO update
on CPU with torch's default (a thread per core) competes for the runners' cores; with
`--threads` set to the cores they leave (at least 1), as `magerl train` now does, it
does not. Busy processes stand in for the runners (one per runner, spinning); the real
PPO update (`learner.ppo.update`, batch 512, minibatch 256) runs on synthetic episodes
padded as real minibatches pad (54 objects, 8 candidates: the most seen in dimir's games
against Easy). Rounds alternate the two settings; medians are reported.

Figures: CPU seconds per update (what the runners lose to it) and wall seconds per
update (how long new weights wait), each as default ÷ fewer threads.

    python bench/learner_threads.py [--runners N] [--rounds 5]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time

import numpy as np
import torch

from magerl.learner.ppo import PPOConfig, make_batch, update
from magerl.model.network import PolicyNet
from magerl.model.synthetic import synthetic_episode


def spin(stop) -> None:
    """A stand-in game runner: one busy core."""
    while not stop.is_set():
        sum(range(10_000))


def time_update(threads: int, model: PolicyNet, optimizer: torch.optim.Optimizer, batch, reps: int) -> tuple[float, float]:
    """(wall, CPU) seconds per update at `threads` torch threads."""
    torch.set_num_threads(threads)
    update(model, optimizer, batch, PPOConfig(), 256, torch.device("cpu"), np.random.default_rng(0))  # settle the pool
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(reps):
        update(model, optimizer, batch, PPOConfig(), 256, torch.device("cpu"), np.random.default_rng(0))
    return (time.perf_counter() - wall) / reps, (time.process_time() - cpu) / reps


def main() -> None:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runners", type=int, default=max(1, cores - 1),
                        help="busy stand-in runners (default: magerl train's, CPU count - 1)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=3, help="updates timed per setting per round")
    args = parser.parse_args()
    default, fewer = torch.get_num_threads(), max(1, cores - args.runners)
    if default == fewer:
        raise SystemExit(f"torch's default is already {fewer} thread(s) here: nothing to compare (try --runners)")

    rng = np.random.default_rng(0)
    batch = make_batch([synthetic_episode(rng, steps=64, objects=54, candidates=8) for _ in range(8)], 0.95)
    torch.manual_seed(0)
    model = PolicyNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    runners = [ctx.Process(target=spin, args=(stop,), daemon=True) for _ in range(args.runners)]
    for p in runners:
        p.start()
    times: dict[int, list[tuple[float, float]]] = {default: [], fewer: []}
    try:
        for r in range(args.rounds):
            for threads in ((default, fewer) if r % 2 == 0 else (fewer, default)):
                times[threads].append(time_update(threads, model, optimizer, batch, args.reps))
    finally:
        stop.set()
        for p in runners:
            p.join()

    wall = {t: statistics.median(w for w, _ in v) for t, v in times.items()}
    cpu = {t: statistics.median(c for _, c in v) for t, v in times.items()}
    print(f"PPO update, batch {len(batch)}, beside {args.runners} busy runner(s) on {cores} cores; "
          f"median of {args.rounds} rounds x {args.reps} updates")
    for label, t in (("torch default", default), ("cores left", fewer)):
        print(f"{label:<13} ({t} thread{'s' if t > 1 else ''}): wall {wall[t]:.2f} s  CPU {cpu[t]:.2f} s per update")
    print(f"CPU per update, default / cores left : {cpu[default] / cpu[fewer]:.2f}x")
    print(f"wall per update, default / cores left: {wall[default] / wall[fewer]:.2f}x")


if __name__ == "__main__":
    main()
