"""What one seat may know of a game, and nothing more.

The engine hides nothing: `hand(opponent)`, the ordered libraries and the RNG are all
readable. A policy sees only this view: its own hand, the public zones (battlefield,
graveyards, exile except face-down cards, stack), and for the hidden zones — the
opponent's hand and both libraries — sizes alone.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

from magerl.game.cards import keyword_name
from magerl.game.engine_json import Memo


@dataclass(frozen=True, slots=True)
class ObjectView:
    id: int
    name: str | None  # None for a face-down card the seat does not control
    zone: str  # Hand, Battlefield, Graveyard, Exile, Stack
    owner: int
    controller: int
    types: tuple[str, ...]  # core types: Creature, Land, Instant, ...
    mana_value: int
    power: int | None
    toughness: int | None
    damage: int
    tapped: bool
    entered_this_turn: bool
    attached_to: int | None
    keywords: tuple[str, ...]
    counters: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class PlayerView:
    seat: int
    life: int
    poison: int
    hand_size: int
    library_size: int
    graveyard_size: int
    lands_played_this_turn: int


@dataclass(frozen=True, slots=True)
class CombatRoles:
    """Who is in this turn's combat, declared or being declared.

    The engine's objects do not say whether they attack or block, and a declaration is
    made one creature at a time (`session._Combat`): without this a policy deciding its
    third attacker cannot see the first two, nor a blocker which attackers are covered.
    """

    attacking: frozenset[int] = frozenset()
    blocking: frozenset[int] = frozenset()
    blocked: frozenset[int] = frozenset()  # attackers with at least one blocker


@dataclass(frozen=True, slots=True)
class Observation:
    seat: int  # the acting seat: the view is this player's
    turn: int
    phase: str
    active_player: int
    prompt: str
    players: tuple[PlayerView, PlayerView]
    objects: tuple[ObjectView, ...]
    combat: CombatRoles = CombatRoles()


def _mana_value(cost: Any) -> int:
    if isinstance(cost, dict) and cost.get("type") == "Cost":
        return int(cost.get("generic") or 0) + len(cost.get("shards") or ())
    return 0


def _view(obj: dict[str, Any], zone: str, seat: int, turn: int) -> ObjectView:
    hidden = bool(obj.get("face_down")) and obj.get("controller") != seat
    counters = obj.get("counters") or {}
    return ObjectView(
        id=obj["id"],
        name=None if hidden else obj.get("name"),
        zone=zone,
        owner=obj.get("owner", -1),
        controller=obj.get("controller", obj.get("owner", -1)),
        types=() if hidden else tuple((obj.get("card_types") or {}).get("core_types") or ()),
        mana_value=0 if hidden else _mana_value(obj.get("mana_cost")),
        power=None if hidden else obj.get("power"),
        toughness=None if hidden else obj.get("toughness"),
        damage=obj.get("damage_marked") or 0,
        tapped=bool(obj.get("tapped")),
        entered_this_turn=obj.get("entered_battlefield_turn") == turn,
        attached_to=obj.get("attached_to"),
        keywords=() if hidden else tuple(keyword_name(k) for k in obj.get("keywords") or ()),
        counters=tuple(sorted((str(k), int(v)) for k, v in counters.items())) if isinstance(counters, dict) else (),
    )


def _player(state: dict[str, Any], seat: int) -> PlayerView:
    return PlayerView(
        seat=seat,
        life=state.get("life", 0),
        poison=state.get("poison_counters", 0),
        hand_size=len(state.get("hand") or ()),
        library_size=len(state.get("library") or ()),
        graveyard_size=len(state.get("graveyard") or ()),
        lands_played_this_turn=state.get("lands_played_this_turn", 0),
    )


@dataclass
class ObservationCache:
    """What one game's observations reuse from the last look (one per game).

    `zones` holds a hand's or a graveyard's views under its object ids and the turn:
    their objects do not change in place, and fetching them was ~40% of an
    observation's cost. `battlefields` holds, per seat, the battlefield's views made
    from the engine's last text of it (`Memo`) in the turn they were made for
    (`entered_this_turn` reads the turn).
    """

    zones: dict[tuple[str, int, int], tuple[tuple[Any, ...], tuple[ObjectView, ...]]] = field(default_factory=dict)
    battlefields: dict[int, tuple[int, Memo]] = field(default_factory=dict)

    def copy(self) -> "ObservationCache":
        return ObservationCache(dict(self.zones), {s: (t, copy.copy(m)) for s, (t, m) in self.battlefields.items()})


def observe(game: Any, seat: int, prompt: str, first_player: int = 0,
            cache: ObservationCache | None = None) -> Observation:
    """The masked view of `game` for `seat` (an engine `Game`), reusing what `cache` shows unchanged."""
    turn = game.turn
    states = (game.player(0), game.player(1))

    def views(name: str, objects: Any) -> tuple[ObjectView, ...]:
        return tuple(_view(o, name, seat, turn) for o in objects)

    def zone(name: str, owner: int, fetch: Callable[[int], Any]) -> tuple[ObjectView, ...]:
        if cache is None:
            return views(name, fetch(owner))
        key, ids = (name, owner, seat), (turn, *(states[owner].get(name.lower()) or ()))
        hit = cache.zones.get(key)
        if hit is None or hit[0] != ids:
            hit = cache.zones[key] = (ids, views(name, fetch(owner)))
        return hit[1]

    objects = list(zone("Hand", seat, game.hand))
    if cache is None:
        objects += views("Battlefield", game.battlefield())
    else:
        made_in, memo = cache.battlefields.get(seat, (None, None))
        if memo is None or made_in != turn:
            memo = Memo()
            cache.battlefields[seat] = (turn, memo)
        objects += memo.read(game.battlefield, lambda answer: views("Battlefield", answer))
    for owner in (0, 1):
        objects += zone("Graveyard", owner, game.graveyard)
    objects += [_view(o, "Exile", seat, turn) for o in game.exile()]
    for entry in game.stack():
        source = game.object(entry["source_id"]) or {}
        view = _view({**source, "id": entry["id"], "controller": entry.get("controller")}, "Stack", seat, turn)
        objects.append(view)
    players = (_player(states[0], 0), _player(states[1], 1))
    return Observation(
        seat=seat,
        turn=turn,
        phase=game.phase,
        active_player=(first_player + turn - 1) % 2 if turn > 0 else first_player,
        prompt=prompt,
        players=players,
        objects=tuple(objects),
    )
