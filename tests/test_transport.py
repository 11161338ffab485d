"""Wire format: round trips, and every kind of bad message rejected with a bounded kind."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from magerl.model.network import ModelConfig, PolicyNet
from magerl.model.synthetic import synthetic_episode
from magerl.transport.episodes import parse_episode
from magerl.transport.messages import MessageError, decode_message, encode_message
from magerl.transport.weights import parse_weights, weights_to_bytes


def test_episode_round_trip() -> None:
    episode = synthetic_episode(np.random.default_rng(0), steps=7)
    back = parse_episode(decode_message(episode.to_bytes()))
    assert back.reward == episode.reward and back.length == 7
    for name, array in episode.arrays.items():
        np.testing.assert_array_equal(back.arrays[name], array)


def test_weights_round_trip() -> None:
    model = PolicyNet(ModelConfig(d_model=16, layers=1, heads=2))
    version, config, state = parse_weights(decode_message(weights_to_bytes(12, model.config, model)))
    assert version == 12 and config == model.config
    clone = PolicyNet(config)
    clone.load_state_dict(state)
    assert all((a == b).all() for a, b in zip(model.state_dict().values(), clone.state_dict().values()))


def _tampered(**changes) -> bytes:
    episode = synthetic_episode(np.random.default_rng(1), steps=5)
    arrays = dict(episode.arrays)
    meta = {"reward": episode.reward}
    for name, value in changes.items():
        if name == "reward":
            meta["reward"] = value
        else:
            arrays[name] = value
    return encode_message("episode", meta, arrays)


@pytest.mark.parametrize(
    "raw, kind",
    [
        (b"\x00garbage\xff" * 10, "malformed"),
        (msgpack.packb([1, 2, 3]), "malformed"),
        (msgpack.packb({"schema": 99, "kind": "episode", "meta": {}, "arrays": {}}), "schema_version"),
        (msgpack.packb({"schema": 1, "kind": "episode", "meta": {}, "arrays": {"x": ["<f4", [4], b"abc"]}}), "malformed"),
        (msgpack.packb({"schema": 1, "kind": "episode", "meta": {}, "arrays": {"x": ["O", [1], b"a"]}}), "malformed"),
        (_tampered(actions=np.full(5, 999, np.int32)), "malformed"),
        (_tampered(object_counts=np.full(5, 1, np.int32)), "malformed"),
        (_tampered(logp=np.full(5, np.nan, np.float32)), "malformed"),
        (_tampered(refs=np.full((60, 3), 500, np.int32)), "malformed"),
        (_tampered(reward=7), "malformed"),
        (_tampered(names=np.full(160, -3, np.int32)), "malformed"),
        (_tampered(evaluations=np.full(5, np.inf, np.float32)), "malformed"),
        (_tampered(evaluations=np.zeros(4, np.float32)), "malformed"),
        (_tampered(evaluations=np.zeros(5, np.int32)), "malformed"),
    ],
)
def test_bad_messages_are_rejected(raw: bytes, kind: str) -> None:
    with pytest.raises(MessageError) as err:
        parse_episode(decode_message(raw))
    assert err.value.kind == kind


def test_the_engines_evaluations_are_optional_and_unknown_arrays_are_dropped() -> None:
    """Teacher games recorded before episodes carried the engine's evaluations still read;
    an array this version does not check does not reach the learner."""
    episode = synthetic_episode(np.random.default_rng(2), steps=5)
    arrays = {name: array for name, array in episode.arrays.items() if name != "evaluations"}
    older = parse_episode(decode_message(encode_message("episode", {"reward": episode.reward}, arrays)))
    assert "evaluations" not in older.arrays and older.length == 5
    extra = parse_episode(decode_message(_tampered(extra=np.zeros(3, np.float32))))
    assert "extra" not in extra.arrays and "evaluations" in extra.arrays


def test_oversized_message_is_rejected_before_decoding() -> None:
    with pytest.raises(MessageError) as err:
        decode_message(b"x" * 101, max_bytes=100)
    assert err.value.kind == "oversized"


def test_no_pickle_anywhere() -> None:
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1] / "magerl"
    offenders = [p for p in root.rglob("*.py") if "import pickle" in p.read_text() or "torch.load(" in p.read_text()]
    assert offenders == []


def test_split_episode_keeps_rows_aligned() -> None:
    episode = synthetic_episode(np.random.default_rng(3), steps=10, objects=4, candidates=3)
    head, tail = episode.split(4)
    assert head.length == 4 and tail.length == 6
    for part in (head, tail):
        parse_episode(decode_message(part.to_bytes()))  # each part is a valid episode
    np.testing.assert_array_equal(np.concatenate([head.arrays["objects"], tail.arrays["objects"]]), episode.arrays["objects"])
