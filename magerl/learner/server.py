"""The learner: receives episodes, trains, publishes weights by version, checkpoints.

A receiving thread validates every message (malformed ones are counted and dropped)
into a bounded inbox. When the inbox is full the thread stops reading, so episodes wait
in the socket and workers drop their oldest at the source (counted there); the inbox
itself drops its oldest only past capacity (counted as queue_full). The training loop takes
whole episodes until a batch is full, runs the PPO update, publishes the new version,
and checkpoints every N updates and on shutdown. A restart resumes from the newest valid
checkpoint; workers reconnect by themselves.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zmq

from magerl import telemetry
from magerl.learner import checkpoint
from magerl.learner.batch_size import plan_batch_size
from magerl.learner.ppo import PPOConfig, make_batch, update
from magerl.model.network import ModelConfig, PolicyNet
from magerl.transport.episodes import Episode, parse_episode
from magerl.transport.messages import MessageError, decode_message
from magerl.transport.sockets import EpisodeReceiver, WeightsPublisher
from magerl.transport.weights import weights_to_bytes


@dataclass
class LearnerConfig:
    checkpoint_dir: Path
    episodes_address: str = "tcp://*:5555"
    weights_address: str = "tcp://*:5556"
    model: ModelConfig = field(default_factory=ModelConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    max_samples_per_batch: int = 512
    minibatch: int = 256
    checkpoint_every: int = 10
    keep_checkpoints: int = 3
    max_updates: int | None = None
    max_policy_lag: int = 50
    inbox_episodes: int = 256
    device: str = "auto"
    threads: int | None = None  # torch's CPU threads; None: torch's default (a thread per physical core)
    seed: int = 0
    republish_seconds: float = 2.0
    init_from: str | None = None  # a checkpoint to start from when there is none to resume (e.g. behaviour cloning)
    command: str | None = None  # the command that started this run, for the recipe (`magerl train` gives its own)


class Inbox:
    """Bounded, thread-safe queue of episodes; the oldest goes when it is full."""

    def __init__(self, capacity: int) -> None:
        self._items: deque[Episode] = deque()
        self._capacity = capacity
        self._cond = threading.Condition()

    def put(self, episode: Episode) -> int:
        with self._cond:
            self._items.append(episode)
            dropped = 0
            while len(self._items) > self._capacity:
                self._items.popleft()
                dropped += 1
            self._cond.notify()
            return dropped

    def take(self, samples: int, timeout: float) -> list[Episode]:
        """Exactly `samples` decisions (an episode may be split; its rest stays first in
        line), or [] when fewer arrived within `timeout`."""
        with self._cond:
            self._cond.wait_for(lambda: sum(e.length for e in self._items) >= samples, timeout)
            if sum(e.length for e in self._items) < samples:
                return []
            taken, total = [], 0
            while total < samples:
                episode = self._items.popleft()
                if total + episode.length > samples:
                    episode, rest = episode.split(samples - total)
                    self._items.appendleft(rest)
                taken.append(episode)
                total += episode.length
            return taken

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        return len(self._items) >= self._capacity


def results_by_opponent(episodes: list[Episode]) -> dict[str, list[int]]:
    """[wins, games] per opponent of the games whose last decision is in this batch.

    The training games' win rate, logged with each update: thousands of games against
    the workers' own mix, with the policy that sampled them, cheaper than any evaluation.
    """
    results: dict[str, list[int]] = {}
    for episode in episodes:
        if episode.bootstrap is None:  # the game ends here, not in a later batch
            tally = results.setdefault(str(episode.meta.get("opponent")), [0, 0])
            tally[0] += episode.reward > 0
            tally[1] += 1
    return results


class Learner:
    def __init__(self, config: LearnerConfig, tm: telemetry.Telemetry) -> None:
        self.config = config
        self.tm = tm
        self.metrics = tm.metrics
        self.log = tm.log
        self.device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if config.device == "auto" else config.device
        )
        if config.threads:
            # where workers' runners share the machine, threads beyond the cores they leave do
            # no work: they wait for busy cores and double the CPU an update costs (bench/learner_threads.py)
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.updates = 0
        self.samples = 0
        # what the checkpoints' training cost, kept across resumes (the ladder reports it)
        self.episodes = 0  # games' episodes trained on to their end
        self.seconds_before = 0.0  # the learner's running time before this process
        self.started = time.monotonic()
        self.init_from: str | None = None
        self.base_recipe: dict[str, Any] | None = None  # the recipe of the checkpoint it started from
        self.training_games: dict[str, list[int]] = {}  # [wins, games] per opponent, across resumes
        self.commands: list[str] = []  # the commands that started and resumed the run
        self.batch_size: int | None = None  # planned when it runs
        resumed, problems = checkpoint.load_latest(config.checkpoint_dir)
        for problem in problems:
            self.log.error("checkpoint_skipped", kind="corrupt", component="checkpoint", detail=problem)
        if resumed is not None:
            model = resumed.model
        elif config.init_from:
            start = checkpoint.find(config.init_from)
            model = start.model
            self.init_from = str(start.path)
            self.base_recipe = start.state.get("recipe")
            self.log.info("initialised", checkpoint=self.init_from)
        else:
            model = PolicyNet(config.model)
        self.model = model.to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.ppo.lr)
        if resumed is not None:
            if resumed.optimizer is not None:
                self.optimizer.load_state_dict(resumed.optimizer)
            self.updates = int(resumed.state["updates"])
            self.samples = int(resumed.state.get("samples", 0))
            self.episodes = int(resumed.state.get("episodes", 0))
            self.seconds_before = float(resumed.state.get("seconds", 0.0))
            self.init_from = resumed.state.get("init_from")
            recipe = resumed.state.get("recipe") or {}
            self.base_recipe = (recipe.get("base") or {}).get("recipe")
            self.training_games = recipe.get("training_games") or {}
            self.commands = list(recipe.get("commands") or [])
            self.log.info("resumed", checkpoint=str(resumed.path), updates=self.updates)
        if config.command:
            self.commands.append(config.command)
        self.model_config = self.model.config
        self.inbox = Inbox(config.inbox_episodes)
        self.stop = threading.Event()
        self.ctx = zmq.Context()
        self.receiver = EpisodeReceiver(self.ctx, config.episodes_address)
        self.publisher = WeightsPublisher(self.ctx, config.weights_address)
        self.ready = False

    @property
    def version(self) -> int:
        return self.updates

    # -- receiving ----------------------------------------------------------------------
    def _receive_loop(self) -> None:
        while not self.stop.is_set():
            if self.inbox.full:
                # Back-pressure: leave episodes in the socket, so senders hold or drop them at the
                # source instead of the learner paying to receive and parse what it would drop.
                time.sleep(0.05)
                continue
            raw = self.receiver.receive(200)
            if raw is None:
                continue
            self.handle_message(raw)

    def handle_message(self, raw: bytes) -> None:
        try:
            episode = parse_episode(decode_message(raw))
        except MessageError as exc:
            self.log.error("message_dropped", kind=exc.kind, component="transport", exc=exc, bytes=len(raw))
            return
        lag = self.version - int(episode.arrays["versions"].min())
        if lag > self.config.max_policy_lag:
            self.metrics.record_episode_dropped("stale_policy")
            return
        dropped = self.inbox.put(episode)
        if dropped:
            self.metrics.record_episode_dropped("queue_full", dropped)
        self.metrics.set_queue_depth("learner_inbox", len(self.inbox))

    # -- training -----------------------------------------------------------------------
    def publish(self) -> None:
        self.publisher.publish(weights_to_bytes(self.version, self.model_config, self.model))
        self.metrics.set_policy_version(self.version)

    def recipe(self, seconds: float) -> dict[str, Any]:
        """How this policy was made and what it cost, its starting point's cost included.

        The same shape as `imitate fit`'s recipe: the ladder reads `method` and `compute`,
        and `base` holds the recipe of the checkpoint the run started from, so a policy
        fine-tuned from a clone carries the clone's teachers and cost with its own.
        """
        base = self.base_recipe or {}
        before = base.get("compute") or {}
        recipe: dict[str, Any] = {
            "method": self.method(),
            "ppo": {**asdict(self.config.ppo), "batch": self.batch_size, "minibatch": self.config.minibatch},
            "training_games": self.training_games,
            "compute": {"episodes": self.episodes + (before.get("episodes") or 0),
                        "seconds": round(seconds + (before.get("seconds") or 0), 1),
                        "ppo_episodes": self.episodes, "ppo_seconds": seconds,
                        "cpu_cores": os.cpu_count(), "device": str(self.device)},
        }
        if self.commands:
            recipe["commands"] = self.commands
        if self.init_from is not None:
            recipe["base"] = {"checkpoint": self.init_from, "recipe": self.base_recipe}
        return recipe

    def method(self) -> str:
        """'self-play', or 'PPO from' what the start was made by (a chain of PPO runs stays 'PPO from' its root)."""
        if self.init_from is None:
            return "self-play"
        before = (self.base_recipe or {}).get("method")
        if before is None:
            return f"PPO from {self.init_from}"
        return before if before.startswith("PPO from") else f"PPO from {before}"

    def save(self) -> None:
        seconds = round(self.seconds_before + time.monotonic() - self.started, 3)  # ms: a short run is not 0
        try:
            path = checkpoint.save(
                self.config.checkpoint_dir, self.updates, self.model, self.optimizer,
                {"version": self.version, "samples": self.samples, "episodes": self.episodes, "seconds": seconds,
                 "init_from": self.init_from, "recipe": self.recipe(seconds)},
                keep=self.config.keep_checkpoints,
            )
        except OSError as exc:
            self.log.error("checkpoint_failed", kind="write_failed", component="checkpoint", exc=exc)
            return
        self.metrics.record_checkpoint_saved()
        self.log.info("checkpoint_saved", path=str(path), updates=self.updates)

    def train_step(self, episodes: list[Episode], batch_size: int) -> None:
        batch = make_batch(episodes, self.config.ppo.gae_lambda, self.config.ppo.shaping, self.config.ppo.gamma)
        lag = float(np.mean(self.version - batch.versions))
        try:
            loss, stats = update(self.model, self.optimizer, batch, self.config.ppo,
                                 min(self.config.minibatch, batch_size), self.device, self.rng)
        except FloatingPointError as exc:
            self.log.error("update_skipped", kind="non_finite_loss", component="learner", exc=exc)
            return
        self.updates += 1
        self.samples += len(batch)
        results = results_by_opponent(episodes)
        self.episodes += sum(games for _, games in results.values())
        for opponent, (wins, games) in results.items():
            tally = self.training_games.setdefault(opponent, [0, 0])
            tally[0] += int(wins)
            tally[1] += int(games)
        self.metrics.record_training_batch(len(batch), loss)
        self.metrics.set_policy_lag(lag)
        self.publish()
        self.log.info("update", updates=self.updates, samples=len(batch), loss=round(loss, 5), policy_lag=round(lag, 2),
                      results=results, **{k: round(v, 5) for k, v in stats.items()})
        if self.updates % self.config.checkpoint_every == 0:
            self.save()

    def run(self) -> None:
        plan = plan_batch_size(self.model, self.device, self.config.max_samples_per_batch)
        self.batch_size = plan.optimal
        self.metrics.set_optimal_batch_size(plan.optimal)
        self.log.info("batch_size_planned", optimal=plan.optimal, bytes_per_sample=round(plan.bytes_per_sample),
                      budget_bytes=round(plan.budget_bytes), device=plan.device)
        receiver = threading.Thread(target=self._receive_loop, name="magerl-receiver", daemon=True)
        receiver.start()
        self.publish()
        self.ready = True
        self.log.info("learner_ready", device=str(self.device), threads=torch.get_num_threads(), version=self.version,
                      episodes_port=self.receiver.port, weights_port=self.publisher.port)
        last_publish = time.monotonic()
        try:
            while not self.stop.is_set():
                if self.config.max_updates is not None and self.updates >= self.config.max_updates:
                    break
                episodes = self.inbox.take(plan.optimal, timeout=0.5)
                self.metrics.set_queue_depth("learner_inbox", len(self.inbox))
                if episodes:
                    self.train_step(episodes, plan.optimal)
                    last_publish = time.monotonic()
                elif time.monotonic() - last_publish > self.config.republish_seconds:
                    self.publish()  # late subscribers get the current version
                    last_publish = time.monotonic()
        finally:
            self.stop.set()
            receiver.join(2)
            self.save()
            self.receiver.close()
            self.publisher.close()
            self.ctx.term()
            self.log.info("learner_stopped", updates=self.updates)


def run_learner(config: LearnerConfig, *, port: int | None = None, addr: str = "0.0.0.0") -> None:
    learner: list[Learner] = []
    tm = telemetry.start("learner", port=port, addr=addr, ready=lambda: bool(learner) and learner[0].ready)
    try:
        learner.append(Learner(config, tm))

        def on_signal(signum: int, _frame: Any) -> None:
            learner[0].stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        learner[0].run()
    finally:
        tm.close()
