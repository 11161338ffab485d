"""The game adapter: actors, combat combinations, auto-pass, caps, engine errors."""

from __future__ import annotations

import random

import pytest
from phase import GameAction

from magerl.game.agents import EngineAIAgent, RandomAgent
from magerl.game.play import play_game
from magerl.game.session import Decision, EngineError, GameSession, Limits

BEARS = ["Grizzly Bears"] * 36 + ["Forest"] * 24


def developing(session: GameSession, decision: Decision, rng: random.Random) -> int:
    """A policy that casts whatever it can and never attacks or blocks: boards fill up."""
    if decision.prompt in ("DeclareAttackers", "DeclareBlockers"):
        return 0
    if decision.prompt == "MulliganDecision":
        return next(i for i, c in enumerate(decision.candidates) if c.data.get("choice", {}).get("type") == "Keep")
    active = [i for i, c in enumerate(decision.candidates) if c.kind not in ("PassPriority", "CancelCast")]
    return active[0] if active else rng.randrange(len(decision.candidates))


def advance_to(session: GameSession, prompt: str, subjects: int, rng: random.Random) -> Decision:
    while (decision := session.next_decision()) is not None:
        combat = session._combat
        if decision.prompt == prompt and combat and combat.position == 0 and len(combat.subjects) >= subjects:
            return decision
        session.choose(decision, developing(session, decision, rng))
    pytest.fail(f"no {prompt} with {subjects} creatures")


def combat_state(session: GameSession) -> dict:
    return session.game.state()["state"]["combat"]


def test_any_subset_of_attackers(engine) -> None:
    session = GameSession(engine, (BEARS, BEARS), seed=3)
    decision = advance_to(session, "DeclareAttackers", 3, random.Random(0))
    subjects = list(session._combat.subjects)
    for k in range(len(subjects)):  # attack with the first and third creature only
        decision = session.next_decision()
        assert decision.candidates[0].target is None and decision.candidates[0].subject == subjects[k]
        session.choose(decision, 1 if k in (0, 2) else 0)
    session.next_decision()
    attackers = {a["object_id"] for a in combat_state(session)["attackers"]}
    assert attackers == {subjects[0], subjects[2]}  # not one of the engine's n+2 listed options


def test_double_block(engine) -> None:
    session = GameSession(engine, (BEARS, BEARS), seed=5)
    rng = random.Random(1)
    # let seat 0 develop, then attack with everything once seat 1 has two blockers
    while True:
        decision = advance_to(session, "DeclareAttackers", 1, rng)
        blockers = [o for o in session.game.battlefield() if o["controller"] != decision.seat and o.get("power")]
        if len(blockers) >= 2:
            break
        while session._combat is not None and session._pending is not None:
            session.choose(session.next_decision(), 0)
    while session._combat is not None and session.next_decision().prompt == "DeclareAttackers":
        session.choose(session.next_decision(), 1)
    decision = session.next_decision()
    assert decision.prompt == "DeclareBlockers"
    first_attacker = decision.candidates[1].target
    blockers = []
    snapshots = []
    original_apply = session._apply

    def apply_and_snapshot(seat, action, prompt):  # combat ends before the next real decision
        original_apply(seat, action, prompt)
        if action.kind == "DeclareBlockers":
            snapshots.append(combat_state(session))

    session._apply = apply_and_snapshot
    while (decision := session.next_decision()).prompt == "DeclareBlockers" and session._combat is not None:
        pick = next((i for i, c in enumerate(decision.candidates) if c.target == first_attacker), 0)
        if pick:
            blockers.append(decision.candidates[pick].subject)
        session.choose(decision, pick)
    assert len(blockers) >= 2
    (state,) = snapshots
    blocked = state["blocker_to_attacker"]
    assert {int(b) for b, attackers in blocked.items() if first_attacker in attackers} == set(blockers)


def test_only_real_choices_are_asked(engine, decks) -> None:
    session = GameSession(engine, (decks["white-weenie"].cards(), decks["green-stompy"].cards()), seed=11)
    agent = RandomAgent(0)
    asked = 0
    while (decision := session.next_decision()) is not None:
        assert len(decision.candidates) >= 2
        if decision.prompt == "MulliganDecision":
            kinds = {c.kind for c in decision.candidates}
            assert kinds in ({"MulliganDecision"}, {"SelectCards"})
        asked += 1
        session.choose(decision, agent.act(decision))
    result = session.result()
    assert result.winner in (0, 1) and result.aborted is None
    assert sum(result.decisions) == asked < result.prompts


def test_same_seed_same_game(engine, decks) -> None:
    def run() -> tuple:
        session = GameSession(engine, (decks["mono-red-burn"].cards(), decks["dimir-control"].cards()), seed=7)
        r = play_game(session, [RandomAgent(1), EngineAIAgent("easy")])
        return r.winner, r.turns, r.prompts, r.decisions

    assert run() == run()


@pytest.mark.parametrize("limits, reason", [(Limits(max_turns=3), "max_turns"), (Limits(max_prompts=40), "max_prompts")])
def test_length_caps_abort(engine, decks, limits, reason) -> None:
    session = GameSession(engine, (decks["white-weenie"].cards(),) * 2, seed=2, limits=limits)
    result = play_game(session, [RandomAgent(0), RandomAgent(1)])
    assert result.aborted == reason and result.winner is None
    assert session.next_decision() is None


def test_rust_panic_becomes_engine_error(engine, decks) -> None:
    with pytest.raises(EngineError) as err:
        GameSession(engine, (decks["white-weenie"].cards(),) * 2, seed=1, first_player=5)
    assert err.value.cause_type == "PanicException"
    # the engine stays usable
    session = GameSession(engine, (decks["white-weenie"].cards(),) * 2, seed=1)
    assert session.next_decision() is not None


def test_rejected_action_becomes_engine_error_with_prompt(engine, decks) -> None:
    session = GameSession(engine, (decks["white-weenie"].cards(),) * 2, seed=1)
    decision = session.next_decision()
    bogus = GameAction.from_dict({"type": "PlayLand", "data": {"object_id": 99999, "card_id": 99999}})
    decision.candidates.append(type(decision.candidates[0])("PlayLand", bogus))
    with pytest.raises(EngineError) as err:
        session.choose(decision, len(decision.candidates) - 1)
    assert err.value.prompt == "MulliganDecision" and err.value.cause_type == "ValueError"
    result = session.result()
    assert result.aborted == "engine_error" and "ValueError" in result.error
    assert session.next_decision() is None


def test_engine_ai_choices_are_candidates(engine, decks) -> None:
    session = GameSession(engine, (decks["green-stompy"].cards(), decks["white-weenie"].cards()), seed=4)
    agents = [EngineAIAgent("easy"), EngineAIAgent("medium", epsilon=0.1, seed=3)]
    while (decision := session.next_decision()) is not None:
        index = agents[decision.seat].act(decision)
        assert 0 <= index < len(decision.candidates)
        session.choose(decision, index)
    assert session.result().winner in (0, 1)


def test_choose_rejects_stale_or_out_of_range(engine, decks) -> None:
    session = GameSession(engine, (decks["white-weenie"].cards(),) * 2, seed=1)
    decision = session.next_decision()
    with pytest.raises(IndexError):
        session.choose(decision, len(decision.candidates))
    session.choose(decision, 0)
    with pytest.raises(ValueError):
        session.choose(decision, 0)
