"""Evaluation of a policy: in the evaluator service's loop and with `magerl eval` / `magerl play`."""

from __future__ import annotations

import subprocess
import sys

from magerl.evaluator.service import EvaluatorConfig, evaluate
from magerl.learner import checkpoint
from magerl.model.network import ModelConfig, PolicyNet

SMALL = ModelConfig(d_model=16, layers=1, heads=2)


def test_evaluate_plays_fixed_seeds(engine, decks) -> None:
    model = PolicyNet(SMALL).eval()
    config = EvaluatorConfig(weights_address="tcp://127.0.0.1:1", games=4, decks=["white-weenie", "green-stompy"])
    deck_cards = [decks[d].cards() for d in config.decks]
    first = evaluate(model, 0, "random", config, engine, deck_cards)
    wins, finished, aborted = first
    assert finished + aborted == 4 and 0 <= wins <= finished
    assert evaluate(model, 0, "random", config, engine, deck_cards) == first  # fixed seeds: same games


def test_evaluate_tells_the_opponent_its_deck(engine, decks, monkeypatch) -> None:
    """A policy set as the opponent plays each game with the network of the deck it is dealt."""
    import magerl.evaluator.service as service
    from magerl.game.agents import RandomAgent
    from magerl.game.play import schedule

    dealt = []
    monkeypatch.setattr(service, "make_agent", lambda spec, seed=None, deck=None: dealt.append(deck) or RandomAgent(seed))
    config = EvaluatorConfig(weights_address="tcp://127.0.0.1:1", games=4, decks=["white-weenie", "green-stompy"])
    evaluate(PolicyNet(SMALL).eval(), 0, "policy:some-set", config, engine, [decks[d].cards() for d in config.decks])
    assert dealt == [config.decks[spec.decks[1]] for spec in schedule(2, 4, config.seed)]
    assert set(dealt) == {"white-weenie", "green-stompy"}


def test_evaluate_plays_the_policy_decks_only(engine, decks, monkeypatch) -> None:
    """A network trained on one deck (`magerl train --policy-deck`) is judged on that deck."""
    import magerl.evaluator.service as service
    from magerl.game.agents import RandomAgent

    dealt = []
    monkeypatch.setattr(service, "make_agent", lambda spec, seed=None, deck=None: dealt.append(deck) or RandomAgent(seed))
    config = EvaluatorConfig(weights_address="tcp://127.0.0.1:1", games=4, decks=["white-weenie", "green-stompy"],
                             policy_decks=["green-stompy"])
    evaluate(PolicyNet(SMALL).eval(), 0, "random", config, engine, [decks[d].cards() for d in config.decks])
    assert dealt == ["white-weenie"] * 4  # the policy played green in every game


def test_eval_and_play_accept_a_checkpoint(tmp_path) -> None:
    checkpoint.save(tmp_path / "run" / "checkpoints", 3, PolicyNet(SMALL), None, {"version": 3})
    run = str(tmp_path / "run")
    proc = subprocess.run([sys.executable, "-m", "magerl.cli", "eval", "--checkpoint", run, "--opponent", "random",
                           "--games", "2", "--jobs", "1", "--deck", "white-weenie", "--deck", "mono-red-burn"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"1: policy:{run}" in proc.stdout and "95% CI" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "magerl.cli", "play", "--agent", f"policy:{run}/checkpoints/ckpt-000000003",
                           "--agent", "engine:veryeasy", "--games", "2", "--jobs", "2", "--deck", "white-weenie",
                           "--deck", "green-stompy", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    missing = subprocess.run([sys.executable, "-m", "magerl.cli", "eval", "--checkpoint", str(tmp_path / "none"),
                              "--opponent", "random", "--games", "1"], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no checkpoint found" in missing.stderr
