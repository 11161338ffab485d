"""No hidden card ever reaches an observation: opponent's hand and libraries are sizes only.
What it does show (combat roles, cached zones) matches the game."""

from __future__ import annotations

import dataclasses
import itertools
import json

import pytest

from magerl.game.agents import EngineAIAgent, RandomAgent
from magerl.game.observation import CombatRoles, Observation, ObservationCache, _view, observe
from magerl.game.session import COMBAT_STEPS, GameSession
from magerl.model.encoding import _BASE_COMBAT, _ordered_objects, encode


def _names(game, ids) -> set[str]:
    names = set()
    for i in ids:
        try:
            names.add(game.object(i)["name"])
        except ValueError:  # a stack entry of an ability is no object
            pass
    return names


def check(observation: Observation, game) -> None:
    seat, opponent = observation.seat, 1 - observation.seat
    players = [game.player(0), game.player(1)]
    hidden_ids = set(players[opponent]["hand"]) | set(players[0]["library"]) | set(players[1]["library"])
    visible_ids = set(players[seat]["hand"]) | {o["id"] for o in game.battlefield()}
    visible_ids |= {o["id"] for o in game.graveyard(0)} | {o["id"] for o in game.graveyard(1)}
    visible_ids |= {o["id"] for o in game.exile()}
    stack = game.stack()
    visible_ids |= {e["id"] for e in stack} | {e["source_id"] for e in stack}

    ids = {o.id for o in observation.objects}
    assert not ids & hidden_ids, "a hidden object id reached the observation"
    assert ids <= visible_ids
    assert {o.id for o in observation.objects if o.zone == "Hand"} == set(players[seat]["hand"])

    # Names: a card name present only in hidden zones must not appear anywhere in the view.
    visible_names = _names(game, visible_ids)
    only_hidden = _names(game, hidden_ids) - visible_names
    text = repr(observation)
    assert not [n for n in only_hidden if n in text], "a hidden card name reached the observation"

    view = observation.players
    assert view[opponent].hand_size == len(players[opponent]["hand"])
    assert view[seat].library_size == len(players[seat]["library"])
    assert view[opponent].library_size == len(players[opponent]["library"])


def test_no_hidden_card_reaches_an_observation(engine, decks) -> None:
    pairings = list(itertools.permutations(sorted(decks), 2))[:8]
    checked = 0
    for game_index, (a, b) in enumerate(pairings):
        session = GameSession(engine, (decks[a].cards(), decks[b].cards()), seed=100 + game_index)
        agents = [RandomAgent(game_index), EngineAIAgent("veryeasy") if game_index % 2 else RandomAgent(99)]
        while (decision := session.next_decision()) is not None:
            check(decision.observation, session.game)
            checked += 1
            session.choose(decision, agents[decision.seat].act(decision))
    assert checked > 500


def test_observation_content(engine, decks) -> None:
    session = GameSession(engine, (decks["white-weenie"].cards(), decks["green-stompy"].cards()), seed=3)
    agent = RandomAgent(0)
    seen_battlefield = False
    while (decision := session.next_decision()) is not None:
        obs = decision.observation
        assert obs.seat == decision.seat and obs.prompt == decision.prompt and obs.turn == session.game.turn
        own = [o for o in obs.objects if o.zone == "Hand"]
        assert all(o.owner == obs.seat and o.name for o in own)
        for o in obs.objects:
            if o.zone == "Battlefield" and "Creature" in o.types:
                assert o.power is not None and o.toughness is not None
                seen_battlefield = True
        session.choose(decision, agent.act(decision))
    assert seen_battlefield


def test_check_catches_a_leak(engine, decks) -> None:
    """The check above is not vacuous: an observation that includes the opponent's hand fails it."""
    session = GameSession(engine, (decks["white-weenie"].cards(), decks["green-stompy"].cards()), seed=3)
    decision = session.next_decision()
    obs = decision.observation
    leaked = [_view(o, "Hand", obs.seat, obs.turn) for o in session.game.hand(1 - obs.seat)]
    with pytest.raises(AssertionError, match="hidden object id"):
        check(dataclasses.replace(obs, objects=obs.objects + tuple(leaked)), session.game)


def test_cached_zones_give_the_same_observation(engine, decks) -> None:
    """The session's observations reuse unchanged hands, graveyards and battlefields; they must equal fresh ones."""
    names = list(decks)
    hits = {"Hand": 0, "Graveyard": 0, "Battlefield": 0}
    looks = 0
    for seed, (a, b) in enumerate(itertools.islice(itertools.permutations(names, 2), 2)):
        session = GameSession(engine, (decks[a].cards(), decks[b].cards()), seed=seed)
        agents = [RandomAgent(seed), RandomAgent(seed + 10)]
        while (d := session.next_decision()) is not None:
            before = session._seen.copy()
            fresh = observe(session.game, d.seat, d.prompt, session.first_player)
            assert d.observation == dataclasses.replace(fresh, combat=d.observation.combat)
            for key, value in session._seen.zones.items():
                hits[key[0]] += before.zones.get(key) is value
            if d.seat in before.battlefields:
                hits["Battlefield"] += before.battlefields[d.seat][1].made is session._seen.battlefields[d.seat][1].made
            looks += 1
            session.choose(d, agents[d.seat].act(d))
    assert all(n > looks / 8 for n in hits.values()), (hits, looks)  # the cache is used, not just correct


class _SameBoard:
    """An engine game whose battlefield text never changes while its turn does."""

    phase = "PreCombatMain"

    def __init__(self) -> None:
        self.turn = 3

    def player(self, seat: int) -> dict:
        return {"life": 20}

    def battlefield(self) -> list:
        return json.loads('[{"id": 7, "name": "Grizzly Bears", "owner": 0, "entered_battlefield_turn": 3}]')

    def hand(self, seat: int) -> list:
        return []

    graveyard = hand

    def exile(self) -> list:
        return []

    stack = exile


def test_cached_battlefield_follows_the_turn() -> None:
    """Same battlefield text in a new turn: the memo must not keep last turn's `entered_this_turn`."""
    game, cache = _SameBoard(), ObservationCache()
    assert observe(game, 0, "Priority", cache=cache).objects[0].entered_this_turn
    game.turn = 4
    assert not observe(game, 0, "Priority", cache=cache).objects[0].entered_this_turn


def test_combat_roles_follow_every_choice(engine, decks) -> None:
    """Attackers and blockers show from the per-creature choice that makes them until combat ends."""
    seen = {"attacking": 0, "blocking": 0, "pending": 0}
    for seed in range(4):
        session = GameSession(engine, (decks["white-weenie"].cards(), decks["green-stompy"].cards()), seed=seed)
        agents = [EngineAIAgent("easy"), RandomAgent(seed)]
        turn, expected = 0, {"attacking": set(), "blocking": set(), "blocked": set()}
        while (d := session.next_decision()) is not None:
            obs = d.observation
            if obs.turn != turn or obs.phase not in COMBAT_STEPS:
                turn, expected = obs.turn, {key: set() for key in expected}
            assert obs.combat == CombatRoles(**{key: frozenset(ids) for key, ids in expected.items()})
            for c in d.candidates:  # the engine names attackers a blocker may block
                if c.kind == "Block" and c.target is not None:
                    assert c.target in obs.combat.attacking
            rows = encode(obs, d.candidates).objects
            for o, row in zip(_ordered_objects(obs), rows):
                assert row[_BASE_COMBAT] == (o.id in obs.combat.attacking)
                assert row[_BASE_COMBAT + 1] == (o.id in obs.combat.blocking)
                assert row[_BASE_COMBAT + 2] == (o.id in obs.combat.blocked)
            seen["attacking"] += bool(obs.combat.attacking)
            seen["blocking"] += bool(obs.combat.blocking)
            seen["pending"] += d.prompt in ("DeclareAttackers", "DeclareBlockers") and bool(obs.combat.attacking)
            choice = d.candidates[agents[d.seat].act(d)]
            if choice.action is None and choice.target is not None:
                if choice.kind == "Attack":
                    expected["attacking"].add(choice.subject)
                else:
                    expected["blocking"].add(choice.subject)
                    expected["blocked"].add(choice.target)
            session.choose(d, d.candidates.index(choice))
    assert all(seen.values()), seen  # attacks, blocks and half-made declarations all occurred
