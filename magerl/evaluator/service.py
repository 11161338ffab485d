"""The evaluator: plays the latest policy against fixed opponents and sets mage_win_rate.

Every `every_updates` versions it plays `games` games against each opponent, on fixed
seeds, across the standard deck pairings with both seatings, and publishes each win rate
(finished games only; aborted ones are logged). Given the decks the learning policy
plays (`policy_decks`, the workers' `--policy-deck`), it plays only those, against every
deck: a one-deck network is judged on its deck. Its policy arrives like the workers':
weights published by the learner.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field
from typing import Any

import zmq

from magerl import telemetry
from magerl.game.agents import make_agent
from magerl.game.cards import CardDatabase
from magerl.game.decks import load_deck, standard_decks
from magerl.game.play import play_game, schedule, wilson
from magerl.game.session import EngineError, GameSession, Limits
from magerl.model.agent import PolicyAgent, one_core
from magerl.model.network import PolicyNet
from magerl.transport.sockets import WeightsSubscriber
from magerl.transport.weights import latest_weights

DEFAULT_OPPONENTS = ("random", "engine:easy", "engine:medium", "engine:hard")


@dataclass
class EvaluatorConfig:
    weights_address: str
    opponents: tuple[str, ...] = DEFAULT_OPPONENTS
    games: int = 8
    every_updates: int = 20
    decks: list[str] = field(default_factory=lambda: sorted(standard_decks()))
    policy_decks: list[str] | None = None  # the decks the learning policy plays (workers' --policy-deck); None: all
    seed: int = 10_000
    card_db: str | None = None
    limits: Limits = field(default_factory=Limits)


def evaluate(model: PolicyNet, version: int, opponent: str, config: EvaluatorConfig, engine: Any,
             decks: list[list[str]]) -> tuple[int, int, int]:
    """(wins, finished games, aborted games) of the policy against `opponent`."""
    wins = finished = aborted = 0
    first = None if config.policy_decks is None else [config.decks.index(d) for d in config.policy_decks]
    for spec in schedule(len(decks), config.games, config.seed, first):
        agents: list[Any] = [None, None]
        seat_decks: list[list[str]] = [[], []]
        policy_seat = spec.agent_seats[0]
        agents[policy_seat] = PolicyAgent(model, version=version, seed=spec.seed)
        # the opponent's deck, for a policy set: it plays each game with that deck's network
        agents[1 - policy_seat] = make_agent(opponent, seed=spec.seed, deck=config.decks[spec.decks[1]])
        seat_decks[policy_seat], seat_decks[1 - policy_seat] = decks[spec.decks[0]], decks[spec.decks[1]]
        try:
            session = GameSession(engine, (seat_decks[0], seat_decks[1]), seed=spec.seed, limits=config.limits)
        except EngineError:
            aborted += 1
            continue
        result = play_game(session, agents)
        if result.aborted:
            aborted += 1
        else:
            finished += 1
            wins += result.winner == policy_seat
    return wins, finished, aborted


def run_evaluator(config: EvaluatorConfig, *, port: int | None = None, addr: str = "0.0.0.0",
                  stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    state = {"version": -1}
    tm = telemetry.start("evaluator", port=port, addr=addr, ready=lambda: state["version"] >= 0)
    one_core()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    cards = CardDatabase.load(config.card_db)
    engine = cards.engine()
    decks = [load_deck(d, cards).cards() for d in config.decks]
    ctx = zmq.Context()
    weights = WeightsSubscriber(ctx, config.weights_address)
    last_evaluated = None
    try:
        while not stop.is_set():
            received = latest_weights(weights, tm.log, 1000)
            if received is None:
                continue
            version, model_config, params = received
            state["version"] = version
            if last_evaluated is not None and version < last_evaluated + config.every_updates:
                continue
            model = PolicyNet(model_config)
            model.load_state_dict(params)
            model.eval()
            for opponent in config.opponents:
                if stop.is_set():
                    break
                wins, finished, aborted = evaluate(model, version, opponent, config, engine, decks)
                if finished:
                    tm.metrics.set_win_rate(opponent, wins / finished, games=finished)
                low, high = wilson(wins, finished)
                tm.log.info("evaluation", version=version, opponent=opponent, wins=wins, games=finished,
                            aborted=aborted, win_rate=round(wins / finished, 4) if finished else None,
                            ci95=[round(low, 4), round(high, 4)])
            last_evaluated = version
    finally:
        weights.close()
        ctx.term()
        tm.close()
