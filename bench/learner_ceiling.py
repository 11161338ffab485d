"""Learner efficiency: the real learner fed a synthetic episode stream vs its ceiling.

1. A learner (the production class, CUDA when present) receives synthetic episodes of
   realistic shape over ZeroMQ from a feeder thread, trains for `--updates` updates, and
   reports updates/s and samples/s; optimal vs current batch size and GPU memory are
   read back from its own /metrics.
2. The ceiling: the same model, forward+backward+AdamW step on one prepared batch of the
   same size, nothing else.
The ratio (learner sample passes/s ÷ ceiling samples/s; each sample is passed `epochs`
times per update) is the pipeline's efficiency. Goal: >= 0.5.

    python bench/learner_ceiling.py [--updates 10] [--batch 16384] [--d-model 64] [--layers 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch
import zmq
from prometheus_client.parser import text_string_to_metric_families

from magerl import telemetry
from magerl.learner.ppo import PPOConfig, loss_terms, make_batch, slice_rows
from magerl.learner.server import Learner, LearnerConfig
from magerl.model.network import ModelConfig, PolicyNet, to_tensors
from magerl.model.synthetic import synthetic_episode


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name + (json.dumps(s.labels, sort_keys=True) if s.labels else "")] = s.value
    return out


def feeder(address: str, stop) -> None:
    """A worker stand-in (its own process): pushes synthetic 100-decision episodes as fast
    as the learner takes them."""
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 32)
    push.connect(address)
    rng = np.random.default_rng(1)
    pool = [synthetic_episode(rng, steps=100) for _ in range(16)]
    i = 0
    while not stop.is_set():
        episode = pool[i % len(pool)]
        try:
            push.send(episode.to_bytes(), zmq.NOBLOCK)
            i += 1
        except zmq.Again:
            time.sleep(0.001)
    push.close(0)
    ctx.term()


def ceiling(model: PolicyNet, batch_size: int, device: torch.device, steps: int) -> float:
    rng = np.random.default_rng(2)
    batch = make_batch([synthetic_episode(rng, steps=batch_size)])
    inputs = to_tensors(slice_rows(batch, np.arange(batch_size)), device)
    args = [torch.from_numpy(a).to(device) for a in (batch.actions.astype(np.int64), batch.logp, batch.returns, batch.advantages)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    model.train()

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss, _ = loss_terms(model, inputs, *args, PPOConfig())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch_size * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=6)
    parser.add_argument("--batch", type=int, default=512, help="MAX_SAMPLES_PER_BATCH for the run")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()

    tm = telemetry.start("learner", port=0, addr="127.0.0.1", sample_interval=1.0)
    config = LearnerConfig(
        checkpoint_dir=Path(tempfile.mkdtemp(prefix="magerl-ceiling-")),
        episodes_address="tcp://127.0.0.1:0", weights_address="tcp://127.0.0.1:0",
        model=ModelConfig(args.d_model, args.layers, 4), max_samples_per_batch=args.batch,
        minibatch=args.batch, checkpoint_every=10**9, max_updates=args.updates,
        max_policy_lag=10**9,
    )
    learner = Learner(config, tm)
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    feed = ctx.Process(target=feeder, args=(f"tcp://127.0.0.1:{learner.receiver.port}", stop), daemon=True)
    feed.start()
    start_updates: list[float] = []

    def watch() -> None:  # time from the first update on: planning and warm-up excluded
        while not stop.is_set():
            if learner.updates >= 1 and not start_updates:
                start_updates.append(time.perf_counter())
            time.sleep(0.005)

    threading.Thread(target=watch, daemon=True).start()
    learner.run()
    elapsed = time.perf_counter() - start_updates[0]
    stop.set()
    feed.join(10)
    metrics = scrape(tm.port)
    samples = metrics["mage_samples_processed_total"]
    updates = metrics["mage_training_updates_total"]
    current = metrics["mage_current_batch_size"]
    rate_updates = (updates - 1) / elapsed
    rate_samples = rate_updates * current
    passes = rate_samples * config.ppo.epochs
    ceiling_rate = ceiling(PolicyNet(config.model).to(learner.device), int(current), learner.device, steps=5)
    figures = {
        "device": str(learner.device),
        "updates_per_s": rate_updates,
        "samples_per_s": rate_samples,
        "sample_passes_per_s": passes,
        "ceiling_samples_per_s": ceiling_rate,
        "efficiency": passes / ceiling_rate,
        "optimal_batch_size": metrics["mage_optimal_batch_size"],
        "current_batch_size": current,
        "samples_processed": samples,
        "gpu_memory": {k: v for k, v in metrics.items() if k.startswith("mage_gpu_memory")},
        "loss": metrics["mage_training_loss"],
    }
    tm.close()
    print(json.dumps(figures, indent=1))
    print(f"learner {passes:.0f} sample passes/s vs ceiling {ceiling_rate:.0f} samples/s on {figures['device']}: "
          f"efficiency {figures['efficiency']:.2f}   goal >= 0.5: {'met' if figures['efficiency'] >= 0.5 else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
