"""Episode messages: one learning seat's decisions in one game, and its result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from magerl.model.encoding import F_CANDIDATE, F_GLOBAL, F_OBJECT, F_PLAYER, MAX_REFS, N_KINDS, NAME_BUCKETS
from magerl.transport.messages import Message, MessageError, encode_message

#: array name -> (dtype, trailing shape)
EPISODE_ARRAYS: dict[str, tuple[str, tuple[int, ...]]] = {
    "object_counts": ("<i4", ()),
    "candidate_counts": ("<i4", ()),
    "players": ("<f4", (2, F_PLAYER)),
    "glob": ("<f4", (F_GLOBAL,)),
    "objects": ("<f4", (F_OBJECT,)),
    "names": ("<i4", ()),
    "kinds": ("<i4", ()),
    "refs": ("<i4", (MAX_REFS,)),
    "target_player": ("<i4", ()),
    "flags": ("<f4", (F_CANDIDATE,)),
    "actions": ("<i4", ()),
    "logp": ("<f4", ()),
    "values": ("<f4", ()),
    "versions": ("<i4", ()),
}

#: arrays an episode may carry: the engine's heuristic evaluation of the position at each
#: decision, from the deciding seat's side (game runners send it; recorded teacher games
#: made before it was added do not)
OPTIONAL_ARRAYS: dict[str, tuple[str, tuple[int, ...]]] = {"evaluations": ("<f4", ())}


CANDIDATE_ROWS = ("kinds", "refs", "target_player", "flags")


@dataclass
class Episode:
    arrays: dict[str, np.ndarray]
    reward: float  # +1 win, -1 loss, 0 draw; a game stopped at a cap as `--capped-games` scores it
    meta: dict[str, Any] = field(default_factory=dict)
    # the value estimate at the decision after the last one, where a split cut the game
    # (GAE bootstraps from it); None when the episode runs to the game's end
    bootstrap: float | None = None
    # likewise the engine's evaluation there, for reward shaping (None: the game's end)
    bootstrap_evaluation: float | None = None

    @property
    def length(self) -> int:
        return int(len(self.arrays["actions"]))

    def split(self, steps: int) -> tuple["Episode", "Episode"]:
        """The first `steps` decisions and the rest, as two episodes with the same result;
        the first bootstraps from the value at the rest's first decision."""
        a = self.arrays
        objects, candidates = int(a["object_counts"][:steps].sum()), int(a["candidate_counts"][:steps].sum())
        head, tail = {}, {}
        for name, array in a.items():
            cut = objects if name in ("objects", "names") else candidates if name in CANDIDATE_ROWS else steps
            head[name], tail[name] = array[:cut], array[cut:]
        evaluation = float(tail["evaluations"][0]) if "evaluations" in tail else None
        return (Episode(head, self.reward, self.meta, float(tail["values"][0]), evaluation),
                Episode(tail, self.reward, self.meta, self.bootstrap, self.bootstrap_evaluation))

    def to_bytes(self) -> bytes:
        return encode_message("episode", {**self.meta, "reward": self.reward}, self.arrays)


def parse_episode(message: Message) -> Episode:
    """Validate an episode message completely: shapes, counts, index ranges, finiteness."""
    if message.kind != "episode":
        raise MessageError("malformed", f"expected an episode, got {message.kind}")
    arrays = message.arrays
    optional = {name: spec for name, spec in OPTIONAL_ARRAYS.items() if name in arrays}
    for name, (dtype, tail) in {**EPISODE_ARRAYS, **optional}.items():
        array = arrays.get(name)
        if array is None:
            raise MessageError("malformed", f"episode array {name!r} missing")
        if array.dtype.str != dtype or array.shape[1:] != tail:
            # e.g. a file recorded before features were added to the encoding
            raise MessageError("malformed", f"episode array {name!r} is {array.dtype.str}{list(array.shape[1:])} "
                               f"per row where this version reads {dtype}{list(tail)}")
    oc, cc = arrays["object_counts"], arrays["candidate_counts"]
    steps = len(oc)
    if steps == 0:
        raise MessageError("malformed", "empty episode")
    for name in ("candidate_counts", "players", "glob", "actions", "logp", "values", "versions", *optional):
        if len(arrays[name]) != steps:
            raise MessageError("malformed", f"{name} has {len(arrays[name])} rows for {steps} steps")
    if (oc < 0).any() or (cc < 1).any():
        raise MessageError("malformed", "bad counts")
    if len(arrays["objects"]) != oc.sum() or len(arrays["names"]) != oc.sum():
        raise MessageError("malformed", "object rows do not match object_counts")
    for name in ("kinds", "refs", "target_player", "flags"):
        if len(arrays[name]) != cc.sum():
            raise MessageError("malformed", f"{name} rows do not match candidate_counts")
    if (arrays["actions"] < 0).any() or (arrays["actions"] >= cc).any():
        raise MessageError("malformed", "action index out of range")
    if (arrays["refs"] < -1).any() or (arrays["refs"] >= np.repeat(oc, cc)[:, None]).any():
        raise MessageError("malformed", "object reference out of range")
    if ((arrays["names"] < 0) | (arrays["names"] >= NAME_BUCKETS)).any() or ((arrays["kinds"] < 0) | (arrays["kinds"] >= N_KINDS)).any():
        raise MessageError("malformed", "embedding index out of range")
    if ((arrays["target_player"] < 0) | (arrays["target_player"] > 2)).any():
        raise MessageError("malformed", "bad target player")
    for name in ("players", "glob", "objects", "flags", "logp", "values", *optional):
        if not np.isfinite(arrays[name]).all():
            raise MessageError("malformed", f"{name} has non-finite values")
    reward = message.meta.get("reward")
    if not isinstance(reward, (int, float)) or reward not in (-1, 0, 1):
        raise MessageError("malformed", "reward must be -1, 0 or 1")
    # only the arrays read here: an unknown one, unchecked, could not be split with the rest
    return Episode(arrays={name: arrays[name] for name in (*EPISODE_ARRAYS, *optional)}, reward=float(reward),
                   meta=message.meta)
