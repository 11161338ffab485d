"""The engine's answers decode to the same values through orjson as through the standard decoder,
and a memo's repeated answer is the last value, not a stale one."""

from __future__ import annotations

import json
import math

import pytest

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


def test_memo_decodes_and_makes_only_for_new_text(engine, decks) -> None:
    """A read whose text is the last one's returns the last product, unmade and undecoded; a new text is made."""
    memo, made = engine_json.Memo(), []

    def make(answer):
        made.append(answer)
        return tuple(answer)

    first = memo.read(lambda: json.loads('[{"id": 1}]'), make)
    assert memo.read(lambda: json.loads('[{"id": 1}]'), make) is first and len(made) == 1
    assert memo.read(lambda: json.loads('[{"id": 2}]'), make) == ({"id": 2},) and len(made) == 2
    with pytest.raises(ZeroDivisionError):  # a failed make keeps no text: the next read makes again
        memo.read(lambda: json.loads('[{"id": 3}]'), lambda answer: 1 / 0)
    assert memo.read(lambda: json.loads('[{"id": 3}]'), make) == ({"id": 3},) and len(made) == 3
    assert json.loads('[{"id": 3}]') == [{"id": 3}]  # outside a read, every text is decoded

    session = GameSession(engine, (decks["green-stompy"].cards(), decks["white-weenie"].cards()), seed=3)
    texts: list[str] = []
    with pytest.MonkeyPatch.context() as m:
        m.setattr(json, "loads", lambda text, **options: texts.append(text) or engine_json._loads(text, **options))
        session.game.battlefield()
    assert len(texts) == 1  # the memo rests on the engine decoding one text per battlefield read
