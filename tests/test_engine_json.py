"""The engine's answers decode to the same values through orjson as through the standard decoder."""

from __future__ import annotations

import json
import math

from magerl.game import engine_json
from magerl.game.agents import RandomAgent
from magerl.game.session import GameSession


def test_installed_and_same_answers(engine, decks, monkeypatch) -> None:
    assert json.loads is engine_json._loads  # importing the session installs it
    session = GameSession(engine, (decks["white-weenie"].cards(), decks["dimir-control"].cards()), seed=2)
    agent = RandomAgent(0)
    game = session.game
    for _ in range(120):
        decision = session.next_decision()
        if decision is None:
            break
        fast = [game.battlefield(), game.hand(0), game.player(1), game.stack(), game.waiting_for(),
                [a.data for a in game.actions()]]
        with monkeypatch.context() as m:
            m.setattr(json, "loads", engine_json._standard)
            standard = [game.battlefield(), game.hand(0), game.player(1), game.stack(), game.waiting_for(),
                        [a.data for a in game.actions()]]
        assert fast == standard
        session.choose(decision, agent.act(decision))


def test_what_orjson_refuses_goes_to_the_standard_decoder() -> None:
    assert math.isnan(json.loads('{"x": NaN}')["x"])
    assert json.loads("[18446744073709551616]") == [2**64]
    assert json.loads('{"a": 1.5}', parse_float=str) == {"a": "1.5"}
