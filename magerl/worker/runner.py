"""A game runner: one process playing games with the current policy, streaming episodes.

Each game pits the learning policy against an opponent drawn from a configured mix:
itself (both seats learn), a past snapshot, or the engine's AI at some difficulty.
New weights are taken between decisions, by version, without stopping the game; every
recorded decision carries the version that made it, so the learner can correct for age.
"""

from __future__ import annotations

import random
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from magerl import telemetry
from magerl.game.agents import EngineAIAgent, parse_mix
from magerl.game.cards import CardDatabase
from magerl.game.decks import load_deck
from magerl.game.session import CAPPED_REWARD, EngineError, GameResult, GameSession, Limits
from magerl.model.agent import PolicyAgent, one_core
from magerl.model.encoding import stack
from magerl.model.network import PolicyNet
from magerl.telemetry.logs import EventLog
from magerl.transport.episodes import Episode
from magerl.transport.sockets import EpisodeSender, WeightsSubscriber
from magerl.transport.weights import latest_weights

DEFAULT_OPPONENTS = "self=0.4,snapshot=0.2,engine:veryeasy=0.1,engine:easy=0.15,engine:medium=0.1,engine:hard=0.05"
ENGINE_ERROR_KIND = {"PanicException": "panic", "ValueError": "rejected_action", "LookupError": "no_legal_action"}


def _check_opponent(name: str) -> None:
    if name not in ("self", "snapshot") and not name.startswith("engine:"):
        raise ValueError(f"opponent {name!r}: use self, snapshot or engine:DIFFICULTY")
    if name.startswith("engine:"):
        EngineAIAgent(name.split(":", 1)[1])  # validates the difficulty


def parse_opponents(spec: str) -> dict[str, float]:
    """`self=0.4,snapshot=0.2,engine:easy=0.4` → weights; the engine AI never drops to zero."""
    mix = parse_mix(spec, _check_opponent)
    if sum(w for n, w in mix.items() if n.startswith("engine:")) <= 0:
        raise ValueError("the opponent mix needs some engine:DIFFICULTY weight (bots never drop to zero)")
    return mix


@dataclass
class RunnerConfig:
    episodes_address: str
    weights_address: str
    decks: list[str]
    opponents: dict[str, float]
    policy_decks: list[str] | None = None  # the learning seat's decks (default: `decks`)
    card_db: str | None = None
    limits: Limits = field(default_factory=Limits)
    seed: int = 0
    snapshot_every: int = 10  # keep a past policy every this many versions
    snapshots: int = 5
    capped: str = "drop"  # a game stopped at a cap (turns, prompts): "drop" or a CAPPED_REWARD


class Runner:
    def __init__(self, index: int, config: RunnerConfig, metrics: Any, log: EventLog) -> None:
        self.index = index
        self.config = config
        self.metrics = metrics
        self.log = log
        self.rng = random.Random((config.seed << 16) ^ index ^ time.time_ns())
        cards = CardDatabase.load(config.card_db)
        self.engine = cards.engine()
        self.decks = [load_deck(d, cards).cards() for d in config.decks]
        self.policy_decks = ([load_deck(d, cards).cards() for d in config.policy_decks] if config.policy_decks
                             else self.decks)
        self.ctx = zmq.Context()
        self.sender = EpisodeSender(self.ctx, config.episodes_address)
        self.weights = WeightsSubscriber(self.ctx, config.weights_address)
        self.model: PolicyNet | None = None
        self.version = -1
        self.snapshots: deque[tuple[int, PolicyNet]] = deque(maxlen=config.snapshots)

    # -- weights ------------------------------------------------------------------------
    def poll_weights(self, timeout_ms: int = 0) -> None:
        received = latest_weights(self.weights, self.log, timeout_ms)
        if received is None:
            return
        version, config, state = received
        if version == self.version:
            return
        if self.model is None or self.model.config != config:
            self.model = PolicyNet(config)
        self.model.load_state_dict(state)
        self.version = version
        self.metrics.set_policy_version(version)
        if version % self.config.snapshot_every == 0 or not self.snapshots:
            snapshot = PolicyNet(config)
            snapshot.load_state_dict(state)
            self.snapshots.append((version, snapshot.eval()))

    # -- games --------------------------------------------------------------------------
    def _opponent(self) -> tuple[str, Any]:
        names = list(self.config.opponents)
        name = self.rng.choices(names, weights=[self.config.opponents[n] for n in names])[0]
        if name == "snapshot" and len(self.snapshots) > 1:
            version, model = self.rng.choice(list(self.snapshots)[:-1])
            return name, PolicyAgent(model, version=version, seed=self.rng.getrandbits(32), name=f"snapshot-{version}")
        if name.startswith("engine:"):
            return name, EngineAIAgent(name.split(":", 1)[1])
        return "self", None

    def play_one(self) -> None:
        """Play one game against an opponent from the mix and send its episodes."""
        opponent_name, opponent = self._opponent()
        seat = self.rng.randrange(2)
        mine, theirs = self.rng.choice(self.policy_decks), self.rng.choice(self.decks)
        decks = (mine, theirs) if seat == 0 else (theirs, mine)
        episodes = self.play_game(opponent_name, opponent, seat, decks, self.rng.getrandbits(31))
        for episode in episodes:
            dropped = self.sender.send(episode.to_bytes())
            if dropped:
                self.metrics.record_episode_dropped("queue_full", dropped)
        self.metrics.set_queue_depth("worker_outbox", len(self.sender.outbox))

    def play_game(self, opponent_name: str, opponent: Any, learner_seat: int, decks: tuple[list[str], list[str]],
                  seed: int) -> list[Episode]:
        """One game of the current policy (both seats when `opponent` is None); its episodes.

        In a game against itself the other seat's episode is kept only when that seat plays
        one of the policy's decks: a network trained for one deck (`policy_decks`) should not
        learn from its games with the opponents' decks.

        The whole game is played with the weights it starts with, and its steps carry their
        version: weights that arrive meanwhile wait for the next game, so the policy lag the
        learner reports (`mage_policy_lag_versions`) is that of the policy that really acted."""
        assert self.model is not None
        learner = PolicyAgent(self.model, version=self.version, seed=seed, record=True)
        agents: list[Any] = [learner, learner]
        if opponent is not None:
            agents[1 - learner_seat] = opponent
        session = GameSession(self.engine, decks, seed=seed, limits=self.config.limits)
        steps: dict[int, list] = {0: [], 1: []}
        evaluations: dict[int, list[float]] = {0: [], 1: []}  # the engine's, for reward shaping
        decisions = 0
        try:
            while (decision := session.next_decision()) is not None:
                agent = agents[decision.seat]
                index = agent.act(decision)
                if agent is learner:
                    taken = learner.take_steps()
                    steps[decision.seat].extend(taken)
                    # the position is the one decided on: nothing is applied before `choose`
                    evaluations[decision.seat].extend([session.evaluation(decision.seat)] * len(taken))
                    decisions += 1
                session.choose(decision, index)
        except EngineError as exc:
            self.log.error("engine_error", kind=ENGINE_ERROR_KIND.get(exc.cause_type, "other"), component="engine",
                           exc=exc, prompt=str(exc.prompt)[:200])
        result = session.result()
        # A game stopped at a cap is dropped unless `capped` scores it: dropped, a policy that
        # stalls is never told so (against itself, both seats get the score: both stalled).
        # An engine error is never the policy's doing: always dropped.
        learned = result.aborted is None or (result.aborted != "engine_error" and self.config.capped in CAPPED_REWARD)
        if result.aborted:
            self.metrics.record_episode_aborted(result.aborted)
            self.log.warning("episode_aborted", reason=result.aborted, turns=result.turns, prompts=result.prompts,
                             opponent=opponent_name, learned=learned)
        else:
            self.metrics.record_episode_completed(self.index, seconds=result.seconds, turns=result.turns,
                                                  decisions=decisions)
        if not learned:
            return []
        seats = [learner_seat]
        if opponent is None and decks[1 - learner_seat] in self.policy_decks:
            seats = [0, 1]
        return [self._episode(steps[s], evaluations[s], s, result, opponent_name) for s in seats if steps[s]]

    def _reward(self, seat: int, result: GameResult) -> float:
        if result.aborted:
            return CAPPED_REWARD[self.config.capped]
        return 0.0 if result.winner is None else (1.0 if result.winner == seat else -1.0)

    def _episode(self, steps: list, evaluations: list[float], seat: int, result: GameResult, opponent: str) -> Episode:
        encoded, actions, logp, values, versions = zip(*steps)
        arrays = stack(encoded)
        arrays.update(
            actions=np.asarray(actions, np.int32),
            logp=np.asarray(logp, np.float32),
            values=np.asarray(values, np.float32),
            versions=np.asarray(versions, np.int32),
            evaluations=np.asarray(evaluations, np.float32),
        )
        meta = {"runner": self.index, "opponent": opponent, "turns": result.turns}
        if result.aborted:
            meta["aborted"] = result.aborted
        return Episode(arrays, self._reward(seat, result), meta)

    def run(self, stop: Any) -> None:
        while not stop.is_set() and self.model is None:
            self.sender.flush()
            self.poll_weights(timeout_ms=500)
        self.log.info("runner_started", runner=self.index, policy_version=self.version)
        while not stop.is_set():
            self.poll_weights()
            self.play_one()
            self.sender.flush()
            self.metrics.set_queue_depth("worker_outbox", len(self.sender.outbox))
        self.close()

    def close(self) -> None:
        """Close the runner's sockets and its ZeroMQ context."""
        self.sender.close()
        self.weights.close()
        self.ctx.term()


def runner_main(index: int, config: RunnerConfig, stop: Any) -> None:
    """Entry point of a runner process (spawned by the worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker stops us through `stop`
    one_core()
    metrics = telemetry.attach("worker")
    Runner(index, config, metrics, EventLog("worker", metrics)).run(stop)
