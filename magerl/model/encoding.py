"""Observation and candidate actions → arrays the network reads.

A decision becomes a set of entity tokens (one per visible object, one per player, one
global) and one feature row per legal candidate, which points at the objects it refers
to. Rows are ragged: an episode stores every decision's rows back to back with counts,
and `collate` pads a batch of decisions into tensors.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from magerl.game.observation import CombatRoles, Observation, ObjectView
from magerl.game.session import Candidate

ZONES = ("Hand", "Battlefield", "Stack", "Graveyard", "Exile")
TYPES = ("Creature", "Land", "Instant", "Sorcery", "Enchantment", "Artifact", "Planeswalker", "Battle")
KEYWORDS = (
    "Flying", "FirstStrike", "DoubleStrike", "Deathtouch", "Lifelink", "Trample", "Reach", "Vigilance",
    "Haste", "Flash", "Defender", "Menace", "Hexproof", "Indestructible", "Shroud", "Prowess", "Landwalk",
)
PHASES = (
    "Untap", "Upkeep", "Draw", "PreCombatMain", "BeginCombat", "DeclareAttackers", "DeclareBlockers",
    "FirstStrikeDamage", "CombatDamage", "EndCombat", "PostCombatMain", "End", "Cleanup",
)
PROMPTS = (
    "MulliganDecision", "Priority", "TargetSelection", "TriggerTargetSelection", "DeclareAttackers",
    "DeclareBlockers", "OptionalCostChoice", "OptionalEffectChoice", "PayCost", "SearchChoice",
)
ACTION_KINDS = (
    "PassPriority", "PlayLand", "CastSpell", "ActivateAbility", "ChooseTarget", "SelectCards", "CancelCast",
    "MulliganDecision", "DecideOptionalCost", "DecideOptionalEffect", "DecideOptionalEffectAndRemember",
    "Attack", "Block",
)
NAME_BUCKETS = 4096  # card names hash into this many embeddings (0 = hidden / none)
MAX_OBJECTS = 64  # graveyards and exile are cut first when a board is larger
MAX_CANDIDATES = 64  # a policy chooses among the first 64 legal candidates
MAX_REFS = 3

# Features are only ever appended to a row: a checkpoint saved before gives them zero weight
# (network.widen_inputs) and plays exactly as it did.
F_OBJECT = len(ZONES) + 1 + len(TYPES) + len(KEYWORDS) + 8 + 3
F_PLAYER = 8
F_GLOBAL = 1 + len(PHASES) + 1 + len(PROMPTS) + 1
F_CANDIDATE = 4

_ZONE = {z: i for i, z in enumerate(ZONES)}
_TYPE = {t: i for i, t in enumerate(TYPES)}
_KEYWORD = {k: i for i, k in enumerate(KEYWORDS)}
_PHASE = {p: i for i, p in enumerate(PHASES)}
_PROMPT = {p: i for i, p in enumerate(PROMPTS)}
_KIND = {k: i + 1 for i, k in enumerate(ACTION_KINDS)}  # 0 = any other kind
N_KINDS = len(ACTION_KINDS) + 1


def name_id(name: str | None) -> int:
    """Stable bucket of a card name (works for any card database, no vocabulary file)."""
    return 0 if not name else 1 + zlib.crc32(name.encode()) % (NAME_BUCKETS - 1)


@dataclass
class Encoded:
    """One decision's arrays."""

    objects: np.ndarray  # [n, F_OBJECT] float32
    names: np.ndarray  # [n] int32
    players: np.ndarray  # [2, F_PLAYER] float32, acting seat first
    glob: np.ndarray  # [F_GLOBAL] float32
    kinds: np.ndarray  # [c] int32
    refs: np.ndarray  # [c, MAX_REFS] int32, indices into this decision's objects, -1 for none
    target_player: np.ndarray  # [c] int32: 0 none, 1 the acting seat, 2 the opponent
    flags: np.ndarray  # [c, F_CANDIDATE] float32


_BASE_TYPE = len(ZONES) + 1
_BASE_KEYWORD = _BASE_TYPE + len(TYPES)
_BASE_NUMBERS = _BASE_KEYWORD + len(KEYWORDS)
_BASE_COMBAT = _BASE_NUMBERS + 8


def _object_rows(objects: list[ObjectView], seat: int, combat: CombatRoles) -> np.ndarray:
    """[n, F_OBJECT]: one-hot zone, mine, one-hot types and keywords, scaled numbers, combat roles."""
    rows = np.zeros((len(objects), F_OBJECT), np.float32)
    numbers = []
    for i, o in enumerate(objects):
        row = rows[i]
        row[_ZONE.get(o.zone, 0)] = 1
        row[len(ZONES)] = o.controller == seat
        for t in o.types:
            if t in _TYPE:
                row[_BASE_TYPE + _TYPE[t]] = 1
        for k in o.keywords:
            if k in _KEYWORD:
                row[_BASE_KEYWORD + _KEYWORD[k]] = 1
        numbers.append((o.mana_value / 8, (o.power or 0) / 8, (o.toughness or 0) / 8, o.damage / 8, o.tapped,
                        o.entered_this_turn, o.attached_to is not None, sum(c for _, c in o.counters) / 4))
    if numbers:
        rows[:, _BASE_NUMBERS:_BASE_COMBAT] = numbers
    for offset, ids in enumerate((combat.attacking, combat.blocking, combat.blocked)):
        if ids:
            rows[:, _BASE_COMBAT + offset] = [o.id in ids for o in objects]
    return rows


def _ordered_objects(obs: Observation) -> list[ObjectView]:
    by_zone: dict[str, list[ObjectView]] = {z: [] for z in ZONES}
    for o in obs.objects:
        by_zone.setdefault(o.zone, []).append(o)
    ordered = [o for z in ZONES for o in by_zone[z]]
    return ordered[:MAX_OBJECTS]


def _refs(data: Any, objects: list[int], players: list[int]) -> None:
    """Collect object ids and player seats that an engine action's payload names."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key in ("object_id", "source_id", "Object") and isinstance(value, int):
                objects.append(value)
            elif key == "Player" and isinstance(value, int):
                players.append(value)
            elif key == "cards" and isinstance(value, list):
                objects.extend(v for v in value if isinstance(v, int))
            elif isinstance(value, (dict, list)):
                _refs(value, objects, players)
    elif isinstance(data, list):
        for value in data:
            _refs(value, objects, players)


def candidate_refs(cand: Candidate) -> tuple[list[int], list[int]]:
    """(object ids, player seats) a candidate names: for combat its creature, then what it
    attacks or blocks; for an engine action whatever its payload names."""
    ids: list[int] = []
    seats: list[int] = []
    if cand.action is None:
        ids.append(cand.subject)  # type: ignore[arg-type]
        target = cand.target
        if isinstance(target, int):
            ids.append(target)
        elif isinstance(target, dict):
            (seats if target.get("type") == "Player" else ids).append(target.get("data"))  # type: ignore[arg-type]
    else:
        _refs(cand.data, ids, seats)
    return ids, seats


def _flag(data: dict[str, Any]) -> float:
    """The yes/no of a choice: keep a hand, pay a cost, accept an effect."""
    choice = data.get("choice")
    if isinstance(choice, dict):
        return 1.0 if choice.get("type") in ("Keep", "Accept") else 0.0
    for key in ("pay", "accept"):
        if key in data:
            return 1.0 if data[key] else 0.0
    return 0.0


def encode(obs: Observation, candidates: Sequence[Candidate]) -> Encoded:
    seat = obs.seat
    objects = _ordered_objects(obs)
    index = {o.id: i for i, o in enumerate(objects)}
    me, opp = obs.players[seat], obs.players[1 - seat]
    players = np.array(
        [
            [p.life / 20, p.poison / 10, p.hand_size / 7, p.library_size / 60, p.graveyard_size / 20,
             p.lands_played_this_turn, float(obs.active_player == p.seat), float(p.seat == seat)]
            for p in (me, opp)
        ],
        np.float32,
    )
    glob = np.zeros(F_GLOBAL, np.float32)
    glob[0] = obs.turn / 20
    glob[1 + _PHASE.get(obs.phase, len(PHASES))] = 1
    glob[2 + len(PHASES) + _PROMPT.get(obs.prompt, len(PROMPTS))] = 1
    glob[-1] = float(obs.active_player == seat)

    shown = candidates[:MAX_CANDIDATES]
    c = len(shown)
    kinds = np.zeros(c, np.int32)
    refs = np.full((c, MAX_REFS), -1, np.int32)
    target_player = np.zeros(c, np.int32)
    flags = np.zeros((c, F_CANDIDATE), np.float32)
    for i, cand in enumerate(shown):
        kinds[i] = _KIND.get(cand.kind, 0)
        ids, seats = candidate_refs(cand)
        if cand.action is None:  # combat step: hold back / don't block
            flags[i, 0] = 1.0 if cand.target is None else 0.0
        else:
            data = cand.data
            flags[i, 1] = _flag(data)
            flags[i, 2] = len(data.get("cards") or ()) / 7
            flags[i, 3] = float(bool(data.get("targets")))
        known = [index[o] for o in dict.fromkeys(ids) if o in index][:MAX_REFS]
        refs[i, : len(known)] = known
        if seats:
            target_player[i] = 1 if seats[0] == seat else 2
    return Encoded(
        objects=_object_rows(objects, seat, obs.combat),
        names=np.array([name_id(o.name) for o in objects], np.int32),
        players=players,
        glob=glob,
        kinds=kinds,
        refs=refs,
        target_player=target_player,
        flags=flags,
    )


# -- ragged storage and batching ------------------------------------------------------
STEP_FIELDS = ("players", "glob")  # one row per decision
OBJECT_FIELDS = ("objects", "names")  # ragged by object count
CANDIDATE_FIELDS = ("kinds", "refs", "target_player", "flags")  # ragged by candidate count


def stack(decisions: Iterable[Encoded]) -> dict[str, np.ndarray]:
    """Concatenate decisions into ragged arrays with `object_counts` / `candidate_counts`."""
    items = list(decisions)
    out: dict[str, np.ndarray] = {
        "object_counts": np.array([len(e.names) for e in items], np.int32),
        "candidate_counts": np.array([len(e.kinds) for e in items], np.int32),
    }
    for name in STEP_FIELDS + OBJECT_FIELDS + CANDIDATE_FIELDS:
        out[name] = np.concatenate([getattr(e, name)[None] if name in STEP_FIELDS else getattr(e, name) for e in items])
    return out


def _pad(values: np.ndarray, counts: np.ndarray, width: int, fill: float) -> tuple[np.ndarray, np.ndarray]:
    rows = np.repeat(np.arange(len(counts)), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    cols = np.arange(len(values)) - starts
    out = np.full((len(counts), width, *values.shape[1:]), fill, values.dtype)
    out[rows, cols] = values
    mask = np.zeros((len(counts), width), bool)
    mask[rows, cols] = True
    return out, mask


def collate(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pad ragged decision arrays (from `stack`, possibly several concatenated) into a batch."""
    oc, cc = arrays["object_counts"], arrays["candidate_counts"]
    n_obj, n_cand = max(int(oc.max(initial=0)), 1), max(int(cc.max(initial=0)), 1)
    objects, object_mask = _pad(arrays["objects"], oc, n_obj, 0.0)
    names, _ = _pad(arrays["names"], oc, n_obj, 0)
    kinds, candidate_mask = _pad(arrays["kinds"], cc, n_cand, 0)
    refs, _ = _pad(arrays["refs"], cc, n_cand, -1)
    target_player, _ = _pad(arrays["target_player"], cc, n_cand, 0)
    flags, _ = _pad(arrays["flags"], cc, n_cand, 0.0)
    return {
        "objects": objects, "names": names, "object_mask": object_mask,
        "players": arrays["players"], "glob": arrays["glob"],
        "kinds": kinds, "refs": refs, "target_player": target_player, "flags": flags,
        "candidate_mask": candidate_mask,
    }


def single(e: Encoded) -> dict[str, np.ndarray]:
    """One decision as a batch of one: `collate(stack([e]))` without the padding work."""
    n, c = max(len(e.names), 1), len(e.kinds)
    objects, names = (e.objects, e.names) if len(e.names) else (np.zeros((1, F_OBJECT), np.float32), np.zeros(1, np.int32))
    return {
        "objects": objects[None], "names": names[None], "object_mask": np.full((1, n), len(e.names) > 0),
        "players": e.players[None], "glob": e.glob[None],
        "kinds": e.kinds[None], "refs": e.refs[None], "target_player": e.target_player[None], "flags": e.flags[None],
        "candidate_mask": np.ones((1, c), bool),
    }
