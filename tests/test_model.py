"""Encoding, network and policy agent on real game decisions; batch-size planning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from magerl.game.agents import RandomAgent
from magerl.game.session import GameSession
from magerl.learner.batch_size import plan_batch_size
from magerl.model.agent import PolicyAgent, _load
from magerl.model.inference import NumpyPolicy
from magerl.model.encoding import (
    F_CANDIDATE, F_GLOBAL, F_OBJECT, F_PLAYER, MAX_CANDIDATES, Encoded, collate, encode, single, stack,
)
from magerl.model.network import ModelConfig, PolicyNet, to_tensors


def decisions(engine, decks, n=150):
    session = GameSession(engine, (decks["white-weenie"].cards(), decks["dimir-control"].cards()), seed=5)
    agent = RandomAgent(1)
    out = []
    while (d := session.next_decision()) is not None and len(out) < n:
        out.append(encode(d.observation, d.candidates))
        session.choose(d, agent.act(d))
    return out


def test_encoding_and_network_on_real_decisions(engine, decks) -> None:
    encoded = decisions(engine, decks)
    arrays = stack(encoded)
    assert arrays["objects"].shape[1] == F_OBJECT
    assert len(arrays["kinds"]) == arrays["candidate_counts"].sum()
    assert (arrays["refs"] >= 0).any(), "candidates should point at objects"
    batch = collate(arrays)
    model = PolicyNet(ModelConfig(d_model=32, layers=1, heads=2))
    logits, values = model(to_tensors(batch))
    assert logits.shape == (len(encoded), max(len(e.kinds) for e in encoded))
    mask = torch.from_numpy(batch["candidate_mask"])
    assert torch.isfinite(logits[mask]).all() and torch.isinf(logits[~mask]).all()
    assert ((values >= -1) & (values <= 1)).all()
    # padding does not change a decision's scores, and the one-decision fast path agrees
    alone, _ = model(to_tensors(collate(stack([encoded[-1]]))))
    fast, _ = model(to_tensors(single(encoded[-1])))
    torch.testing.assert_close(fast, alone)
    n = len(encoded[-1].kinds)
    torch.testing.assert_close(alone[0, :n], logits[-1, :n], rtol=1e-4, atol=1e-4)


def test_policy_agent_plays_and_records(engine, decks) -> None:
    model = PolicyNet(ModelConfig(d_model=32, layers=1, heads=2))
    session = GameSession(engine, (decks["green-stompy"].cards(), decks["mono-red-burn"].cards()), seed=9)
    agent = PolicyAgent(model, version=3, seed=0, record=True)
    other = RandomAgent(2)
    while (d := session.next_decision()) is not None:
        index = (agent if d.seat == 0 else other).act(d)
        assert 0 <= index < min(len(d.candidates), MAX_CANDIDATES)
        session.choose(d, index)
    steps = agent.take_steps()
    assert steps and all(v == 3 and lp <= 0 for _, _, lp, _, v in steps)
    assert agent.steps == []


def test_policy_agent_samples_its_distribution_or_takes_the_likeliest(engine, decks) -> None:
    torch.manual_seed(1)
    model = PolicyNet(ModelConfig(d_model=32, layers=1, heads=2))
    session = GameSession(engine, (decks["green-stompy"].cards(), decks["mono-red-burn"].cards()), seed=9)
    other = RandomAgent(2)
    while (d := session.next_decision()) is not None and len(d.candidates) < 3:
        session.choose(d, other.act(d))
    assert d is not None
    with torch.inference_mode():
        logits, _ = model(to_tensors(single(encode(d.observation, d.candidates))))
    probs = torch.softmax(logits[0].double(), -1).numpy()
    sampler = PolicyAgent(model, seed=0, record=True)
    actions = [sampler.act(d) for _ in range(4000)]
    draws = np.bincount(actions, minlength=len(probs)) / len(actions)
    assert np.abs(draws - probs).max() < 0.03, (draws, probs)
    recorded = sampler.take_steps()
    assert all(lp == pytest.approx(np.log(probs[a]), abs=1e-5) for _, a, lp, _, _ in recorded[:20])
    assert PolicyAgent(model, greedy=True).act(d) == int(np.argmax(probs))


def test_batch_size_plan_on_cpu_is_measured_and_capped() -> None:
    model = PolicyNet(ModelConfig(d_model=32, layers=1, heads=2))
    plan = plan_batch_size(model, torch.device("cpu"), cap=10**9)
    assert plan.bytes_per_sample > 1000 and plan.optimal > 1
    assert plan.optimal == pytest.approx((plan.budget_bytes - plan.fixed_bytes) // plan.bytes_per_sample, abs=1)
    bigger = plan_batch_size(PolicyNet(ModelConfig(d_model=64, layers=2, heads=4)), torch.device("cpu"), cap=10**9)
    assert bigger.bytes_per_sample > plan.bytes_per_sample
    assert plan_batch_size(model, torch.device("cpu"), cap=48).optimal == 48


@pytest.mark.parametrize("n_objects", [0, 1, 2, 3])
def test_network_handles_boards_with_few_objects(n_objects) -> None:
    """A mulligan to two cards leaves fewer objects than the three fixed tokens (a real crash once)."""
    rng = np.random.default_rng(n_objects)
    refs = np.full((2, 3), -1, np.int32)
    if n_objects:  # the last object before the first: the numpy forward keeps only referenced rows, sorted
        refs[1, :2] = n_objects - 1, 0
    e = Encoded(rng.random((n_objects, F_OBJECT), np.float32), np.arange(1, n_objects + 1, dtype=np.int32),
                rng.random((2, F_PLAYER), np.float32), rng.random(F_GLOBAL).astype(np.float32),
                np.array([1, 2], np.int32), refs, np.zeros(2, np.int32),
                rng.random((2, F_CANDIDATE), np.float32))
    model = PolicyNet(ModelConfig(d_model=16, layers=2, heads=2))
    for batch in (single(e), collate(stack([e, e]))):
        logits, values = model(to_tensors(batch))
        assert torch.isfinite(logits).all() and torch.isfinite(values).all()
    logits, values = model(to_tensors(single(e)))  # and the numpy forward sees the same board
    np_logits, np_value = NumpyPolicy(model)(single(e))
    np.testing.assert_allclose(np_logits, logits[0].detach().numpy(), rtol=1e-4, atol=1e-5)
    assert np_value == pytest.approx(float(values[0].detach()), abs=1e-5)


@pytest.mark.parametrize("which", ["shipped", "untrained"])
def test_numpy_forward_matches_torch(engine, decks, which) -> None:
    """What agents play with (numpy) is the network the learner trains (torch), decision by decision."""
    torch.manual_seed(3)
    model = _load("default")[0] if which == "shipped" else PolicyNet(ModelConfig(d_model=32, layers=2, heads=4))
    fast = NumpyPolicy(model)
    for e in decisions(engine, decks, n=60):
        batch = single(e)
        with torch.inference_mode():
            logits, value = model(to_tensors(batch))
        np_logits, np_value = fast(batch)
        assert np_logits.dtype == np.float32
        np.testing.assert_allclose(np_logits, logits[0].numpy(), rtol=1e-4, atol=1e-4)
        assert np_value == pytest.approx(float(value[0]), abs=1e-4)
    # an agent keeps the weights it started with; a new one sees an update
    before = fast(batch)[0].copy()
    with torch.no_grad():
        model.score[2].bias.add_(1.0)
    np.testing.assert_array_equal(fast(batch)[0], before)
    np.testing.assert_allclose(NumpyPolicy(model)(batch)[0], before + 1.0, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        model.score[2].bias.sub_(1.0)
