"""A game runner: its choice of decks (the learning seat can be given its own), and the policy
version its episodes carry."""

from __future__ import annotations

import subprocess
import sys
from unittest.mock import Mock

import numpy as np
import pytest

from magerl.game.agents import RandomAgent
from magerl.game.session import Limits
from magerl.model.network import PolicyNet
from magerl.transport.episodes import parse_episode
from magerl.transport.messages import decode_message
from magerl.worker.runner import Runner, RunnerConfig

ALL = ["dimir-control", "green-stompy", "mono-red-burn", "white-weenie"]


def _seatings(policy_decks: list[str] | None, games: int = 200, decks: list[str] = ALL) -> list[tuple[str, str, int]]:
    """(learning seat's deck, other seat's deck, learning seat) of `games` games of a runner."""
    runner = Runner(0, RunnerConfig("tcp://127.0.0.1:1", "tcp://127.0.0.1:2", decks=decks,
                                    opponents={"engine:easy": 1.0}, policy_decks=policy_decks), Mock(), Mock())
    names = {id(deck): name for name, deck in zip(decks, runner.decks)}
    names.update({id(deck): name for name, deck in zip(policy_decks or ALL, runner.policy_decks)})
    played: list[tuple[str, str, int]] = []

    def play_game(opponent_name, opponent, seat, decks, seed):
        played.append((names[id(decks[seat])], names[id(decks[1 - seat])], seat))
        return []

    runner.play_game = play_game  # type: ignore[method-assign]
    try:
        for _ in range(games):
            runner.play_one()
    finally:
        runner.close()
    return played


def test_the_learning_seat_plays_its_own_decks_against_every_deck() -> None:
    played = _seatings(["mono-red-burn"])
    assert {mine for mine, _, _ in played} == {"mono-red-burn"}
    assert {theirs for _, theirs, _ in played} == set(ALL)
    assert {seat for _, _, seat in played} == {0, 1}


def test_without_policy_decks_both_seats_draw_from_all_decks() -> None:
    played = _seatings(None)
    assert {mine for mine, _, _ in played} == set(ALL) == {theirs for _, theirs, _ in played}


def test_the_other_seat_is_dealt_its_decks_as_often_as_they_are_named() -> None:
    """`magerl train --opponent-deck`: e.g. no mirror match, and the worst matchup twice as often."""
    played = _seatings(["dimir-control"], games=400,
                       decks=["white-weenie", "white-weenie", "mono-red-burn", "green-stompy"])
    theirs = [deck for _, deck, _ in played]
    assert set(theirs) == {"white-weenie", "mono-red-burn", "green-stompy"}
    assert 150 < theirs.count("white-weenie") < 250  # half of 400: 200 ± 5 standard deviations


@pytest.mark.parametrize("command, flag", [("worker", "--policy-deck"), ("train", "--policy-deck"),
                                           ("worker", "--deck"), ("train", "--opponent-deck")])
def test_an_unknown_deck_is_a_usage_error(command: str, flag: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "magerl.cli", command, flag, "no-such-deck"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no-such-deck" in proc.stderr


def test_an_episode_carries_the_version_that_played_it_when_new_weights_arrive_mid_game() -> None:
    runner = Runner(0, RunnerConfig("tcp://127.0.0.1:1", "tcp://127.0.0.1:2", decks=ALL,
                                    opponents={"random": 1.0}), Mock(), Mock())
    runner.model, runner.version = PolicyNet().eval(), 3

    def newer_weights(timeout_ms: int = 0) -> None:  # as if the learner published during the game
        runner.version += 1

    runner.poll_weights = newer_weights  # type: ignore[method-assign]
    try:
        episodes = runner.play_game("random", RandomAgent(0), 0, (runner.decks[1], runner.decks[1]), seed=1)
    finally:
        runner.close()
    assert len(episodes) == 1 and len(episodes[0].arrays["versions"]) > 32  # long enough for weights to arrive
    assert set(episodes[0].arrays["versions"].tolist()) == {3}
    # the engine's evaluation of each decision's position, from the learning seat's side, for shaping
    evaluations = episodes[0].arrays["evaluations"]
    assert len(evaluations) == episodes[0].length and np.isfinite(evaluations).all() and evaluations.std() > 0


def test_against_itself_only_the_seats_playing_the_policys_decks_learn() -> None:
    runner = Runner(0, RunnerConfig("tcp://127.0.0.1:1", "tcp://127.0.0.1:2", decks=ALL,
                                    opponents={"self": 1.0}, policy_decks=["mono-red-burn"]), Mock(), Mock())
    runner.model, runner.version = PolicyNet().eval(), 0
    red, green = runner.policy_decks[0], runner.decks[ALL.index("green-stompy")]
    try:
        against_green = runner.play_game("self", None, 1, (green, red), seed=2)
        mirror = runner.play_game("self", None, 0, (red, runner.decks[ALL.index("mono-red-burn")]), seed=3)
    finally:
        runner.close()
    assert len(against_green) == 1 and len(mirror) == 2


def _capped_game(capped: str) -> tuple[list, Mock, Mock]:
    """A game against random stopped at a 2-turn cap: its episodes, metrics and log."""
    metrics, log = Mock(), Mock()
    runner = Runner(0, RunnerConfig("tcp://127.0.0.1:1", "tcp://127.0.0.1:2", decks=ALL, opponents={"random": 1.0},
                                    limits=Limits(max_turns=2), capped=capped), metrics, log)
    runner.model, runner.version = PolicyNet().eval(), 0
    try:
        return runner.play_game("random", RandomAgent(0), 0, (runner.decks[1], runner.decks[1]), seed=1), metrics, log
    finally:
        runner.close()


def test_a_game_past_a_cap_is_counted_logged_and_not_sent() -> None:
    episodes, metrics, log = _capped_game("drop")
    assert episodes == []
    metrics.record_episode_aborted.assert_called_once_with("max_turns")
    metrics.record_episode_completed.assert_not_called()
    log.warning.assert_called_once()
    args, fields = log.warning.call_args
    assert args == ("episode_aborted",) and fields["reason"] == "max_turns" and fields["turns"] == 3
    assert fields["opponent"] == "random"
    assert fields["learned"] is False


@pytest.mark.parametrize("capped, reward", [("loss", -1.0), ("draw", 0.0)])
def test_a_capped_game_can_be_sent_scored(capped: str, reward: float) -> None:
    """--capped-games loss|draw: a stalled game teaches the policy instead of vanishing."""
    episodes, metrics, log = _capped_game(capped)
    assert len(episodes) == 1
    episode = parse_episode(decode_message(episodes[0].to_bytes()))  # the learner's view of it
    assert episode.reward == reward and episode.meta["aborted"] == "max_turns" and episode.length > 0
    metrics.record_episode_aborted.assert_called_once_with("max_turns")
    metrics.record_episode_completed.assert_not_called()
    assert log.warning.call_args[1]["learned"] is True
