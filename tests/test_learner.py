"""The learner in-process: updates set real metrics, bad messages are counted, checkpoints are safe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from magerl import telemetry
from magerl.evaluator.ladder import training_of
from magerl.learner import checkpoint
from magerl.learner.server import Learner, LearnerConfig
from magerl.model.network import ModelConfig, PolicyNet
from magerl.model.synthetic import synthetic_episode
from magerl.telemetry import collectors
from magerl.telemetry.metrics import MULTIPROC_ENV

SMALL = ModelConfig(d_model=16, layers=1, heads=2)


@pytest.fixture
def tm(tmp_path, monkeypatch):
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path / "metrics"))
    monkeypatch.setattr(collectors, "nvml_reader", lambda: None)
    t = telemetry.start("learner", port=0, addr="127.0.0.1", sample_interval=3600)
    yield t
    t.close()


def make_learner(tmp_path, tm, **kw) -> Learner:
    config = LearnerConfig(checkpoint_dir=tmp_path / "ckpt", episodes_address="tcp://127.0.0.1:0",
                           weights_address="tcp://127.0.0.1:0", model=SMALL, device="cpu", **kw)
    return Learner(config, tm)


def value(tm, name: str, **labels) -> float:
    m = tm.metrics.metric(name)
    return (m.labels(**labels) if labels else m)._value.get()


def close(learner: Learner) -> None:
    learner.receiver.close()
    learner.publisher.close()
    learner.ctx.term()


def test_update_sets_real_metrics_and_checkpoints(tmp_path, tm) -> None:
    learner = make_learner(tmp_path, tm, checkpoint_every=2)
    rng = np.random.default_rng(0)
    try:
        before = {k: v.clone() for k, v in learner.model.state_dict().items()}
        for _ in range(2):
            learner.train_step([synthetic_episode(rng, steps=40), synthetic_episode(rng, steps=30)], batch_size=64)
        assert learner.updates == 2
        assert value(tm, "mage_training_updates_total") == 2
        assert value(tm, "mage_current_batch_size") == 70
        assert value(tm, "mage_samples_processed_total") == 140
        loss = value(tm, "mage_training_loss")
        assert np.isfinite(loss) and loss != 0.0
        assert value(tm, "mage_policy_version") == 2
        assert any((before[k] != v).any() for k, v in learner.model.state_dict().items())
        assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "ckpt")] == ["ckpt-000000002"]
        assert value(tm, "mage_checkpoints_saved_total") == 1
    finally:
        close(learner)
    resumed = make_learner(tmp_path, tm)
    try:
        assert resumed.updates == 2 and resumed.samples == 140 and resumed.episodes == 4
        assert resumed.seconds_before > 0 and resumed.init_from is None
        for k, v in resumed.model.state_dict().items():
            torch.testing.assert_close(v, learner.model.state_dict()[k])
        assert resumed.optimizer.state_dict()["state"], "optimizer state resumed"
    finally:
        close(resumed)


def test_malformed_and_stale_messages_are_counted_not_fatal(tmp_path, tm) -> None:
    learner = make_learner(tmp_path, tm, max_policy_lag=5)
    try:
        learner.handle_message(b"\x93garbage")
        learner.handle_message(b"")
        assert value(tm, "mage_errors_total", component="transport", kind="malformed") == 2
        learner.updates = 50
        learner.handle_message(synthetic_episode(np.random.default_rng(0), steps=5, version=1).to_bytes())
        assert value(tm, "mage_episodes_dropped_total", reason="stale_policy") == 1
        learner.handle_message(synthetic_episode(np.random.default_rng(0), steps=5, version=48).to_bytes())
        assert len(learner.inbox) == 1
    finally:
        close(learner)


def test_inbox_drops_oldest_when_full(tmp_path, tm) -> None:
    learner = make_learner(tmp_path, tm, inbox_episodes=2)
    try:
        for i in range(4):
            learner.handle_message(synthetic_episode(np.random.default_rng(i), steps=3).to_bytes())
        assert len(learner.inbox) == 2
        assert value(tm, "mage_episodes_dropped_total", reason="queue_full") == 2
        assert value(tm, "mage_queue_depth", queue="learner_inbox") == 2
        assert sum(e.length for e in learner.inbox.take(5, timeout=0.1)) == 5  # the second episode is split
        assert len(learner.inbox) == 1 and learner.inbox.take(1, timeout=0.1)[0].length == 1
    finally:
        close(learner)


def test_failed_checkpoint_write_keeps_previous(tmp_path, tm, monkeypatch) -> None:
    learner = make_learner(tmp_path, tm)
    try:
        learner.updates = 1
        learner.save()
        learner.updates = 2

        def broken(*args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(checkpoint, "save_file", broken)
        learner.save()
        assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["ckpt-000000001"]
        assert value(tm, "mage_errors_total", component="checkpoint", kind="write_failed") == 1
        assert value(tm, "mage_checkpoints_saved_total") == 1
    finally:
        close(learner)


def test_damaged_newest_checkpoint_is_skipped(tmp_path) -> None:
    model = PolicyNet(SMALL)
    checkpoint.save(tmp_path, 1, model, None, {"version": 1})
    newest = checkpoint.save(tmp_path, 2, model, None, {"version": 2})
    (newest / "model.safetensors").write_bytes(b"truncated")
    ckpt, problems = checkpoint.load_latest(tmp_path)
    assert ckpt is not None and ckpt.state["updates"] == 1
    assert len(problems) == 1 and "ckpt-000000002" in problems[0]


def test_checkpoint_from_before_new_features_plays_as_before(tmp_path) -> None:
    """Object features appended since a checkpoint was saved get zero weight: same outputs, Adam restarts."""
    from safetensors.torch import load_file, save_file

    from magerl.model.encoding import collate
    from magerl.model.network import to_tensors

    torch.manual_seed(0)
    model = PolicyNet(SMALL)
    path = checkpoint.save(tmp_path, 1, model, torch.optim.AdamW(model.parameters()), {"version": 1})
    tensors = load_file(str(path / "model.safetensors"))
    tensors["object_proj.weight"] = tensors["object_proj.weight"][:, :-3].contiguous()  # as saved before
    save_file(tensors, str(path / "model.safetensors"))
    loaded = checkpoint.load(path)
    assert loaded.optimizer is None  # its moments have the old shape
    batch = collate(synthetic_episode(np.random.default_rng(1), steps=4, objects=6, candidates=3).arrays)
    old = dict(batch, objects=batch["objects"].copy())
    old["objects"][..., -3:] = 0  # the old model never saw the new features
    with torch.no_grad():
        model.eval(), loaded.model.eval()
        before, _ = model(to_tensors(old))
        after, _ = loaded.model(to_tensors(batch))
        changed, _ = model(to_tensors(batch))
    assert torch.allclose(before, after, atol=1e-6)
    assert not torch.allclose(before, changed, atol=1e-3)  # the new columns do matter to a wider model


def test_keeps_last_k(tmp_path) -> None:
    model = PolicyNet(SMALL)
    for u in range(1, 6):
        checkpoint.save(tmp_path, u, model, None, {}, keep=3)
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["ckpt-000000005", "ckpt-000000004", "ckpt-000000003"]


def test_learner_starts_from_another_checkpoint(tmp_path, tm) -> None:
    """--init-from: a behaviour-cloned policy is where self-play starts (when there is nothing to resume)."""
    start = PolicyNet(ModelConfig(d_model=8, layers=1, heads=2))
    checkpoint.save(tmp_path / "bc", 0, start, None, {"version": 0})
    learner = make_learner(tmp_path, tm, init_from=str(tmp_path / "bc"))
    try:
        assert learner.model.config == start.config  # its size wins over the configured one
        assert all(torch.equal(v, start.state_dict()[k]) for k, v in learner.model.state_dict().items())
        assert learner.updates == 0
        learner.save()  # its checkpoints say where it started: the ladder names it
    finally:
        close(learner)
    saved = checkpoint.list_checkpoints(tmp_path / "ckpt")[-1]
    start_path = str(checkpoint.list_checkpoints(tmp_path / "bc")[-1])
    assert training_of(saved)["method"] == f"PPO from {start_path}"
    resumed = make_learner(tmp_path, tm, init_from=str(tmp_path / "elsewhere"))
    try:
        assert resumed.init_from == start_path
    finally:
        close(resumed)


def test_a_fine_tuned_policy_carries_its_starting_points_recipe_and_cost(tmp_path, tm) -> None:
    """A clone fine-tuned with PPO: its checkpoints add the run's games and time to the clone's,
    keep the clone's recipe, and tally the training games, across a resume."""
    bc_recipe = {"method": "behaviour cloning", "teacher": ["engine:medium"], "compute": {"episodes": 100, "seconds": 1000.0}}
    checkpoint.save(tmp_path / "bc", 0, PolicyNet(SMALL), None, {"version": 0, "recipe": bc_recipe})
    rng = np.random.default_rng(0)

    first, second = ([synthetic_episode(rng, steps=20) for _ in range(n)] for n in (3, 2))
    won = [sum(e.reward > 0 for e in batch) for batch in (first, second)]

    learner = make_learner(tmp_path, tm, init_from=str(tmp_path / "bc"), command="magerl train --policy-deck x")
    try:
        learner.train_step(first, batch_size=60)
        learner.save()
    finally:
        close(learner)
    recipe = checkpoint.load_latest(tmp_path / "ckpt")[0].state["recipe"]
    assert recipe["base"]["recipe"] == bc_recipe and recipe["training_games"] == {"synthetic": [won[0], 3]}
    assert recipe["ppo"]["lr"] == learner.config.ppo.lr and recipe["ppo"]["gae_lambda"] == learner.config.ppo.gae_lambda
    assert recipe["commands"] == ["magerl train --policy-deck x"]
    resumed = make_learner(tmp_path, tm, command="magerl train --resume")
    try:
        resumed.train_step(second, batch_size=40)
        resumed.save()
    finally:
        close(resumed)
    saved = checkpoint.list_checkpoints(tmp_path / "ckpt")[0]
    state = checkpoint.load_latest(tmp_path / "ckpt")[0].state
    recipe = state["recipe"]
    assert recipe["base"]["recipe"] == bc_recipe and recipe["training_games"] == {"synthetic": [sum(won), 5]}
    assert recipe["commands"] == ["magerl train --policy-deck x", "magerl train --resume"]  # how to make it again
    training = training_of(saved)
    assert training["method"] == "PPO from behaviour cloning" and training["episodes"] == 105
    # the run's own time (both processes; it can round to 0.0 on a fast machine) on top of the clone's
    assert recipe["compute"]["ppo_seconds"] == state["seconds"] >= 0
    assert training["seconds"] == pytest.approx(1000.0 + state["seconds"], abs=0.2)
    again = make_learner(tmp_path / "again", tm, init_from=str(tmp_path / "ckpt"))  # PPO from a PPO checkpoint
    try:
        again.save()
    finally:
        close(again)
    chained = training_of(checkpoint.list_checkpoints(tmp_path / "again" / "ckpt")[0])
    assert chained["method"] == "PPO from behaviour cloning" and chained["episodes"] == 105


def test_gae_credits_each_decision_with_the_value_change_after_it() -> None:
    """lambda 1 is the game's result minus the value; lambda 0 the next value's change alone."""
    from magerl.learner.ppo import gae, make_batch

    values = np.array([0.0, 0.5, -0.5], np.float32)
    np.testing.assert_allclose(gae(values, 1.0, 1.0), [1.0, 0.5, 1.5])
    np.testing.assert_allclose(gae(values, 1.0, 0.0), [0.5, -1.0, 1.5])
    np.testing.assert_allclose(gae(values, 1.0, 0.5), [0.5 + 0.5 * (-1.0 + 0.5 * 1.5), -1.0 + 0.5 * 1.5, 1.5])
    episode = synthetic_episode(np.random.default_rng(0), steps=3, objects=2, candidates=2)
    episode.arrays["values"] = values
    for lam in (1.0, 0.5):  # the value head's targets are lambda-returns: advantage + value
        batch = make_batch([episode], lam)
        np.testing.assert_allclose(batch.returns, gae(values, episode.reward, lam) + values, rtol=1e-6)


def test_a_split_episode_bootstraps_from_the_value_where_it_was_cut() -> None:
    """The learner cuts episodes to fill a batch; with GAE the first part must not end on the game's result."""
    from magerl.learner.ppo import gae, make_batch

    episode = synthetic_episode(np.random.default_rng(0), steps=6, objects=2, candidates=2)
    episode.arrays["values"] = np.linspace(-0.5, 0.5, 6, dtype=np.float32)
    head, tail = episode.split(4)
    assert head.bootstrap == pytest.approx(episode.arrays["values"][4]) and tail.bootstrap is None
    whole = gae(episode.arrays["values"], episode.reward, 0.0)
    parts = make_batch([head, tail], 0.0)
    np.testing.assert_allclose(parts.returns, whole + episode.arrays["values"], rtol=1e-6)
    monte_carlo = make_batch([head, tail], 1.0)  # lambda 1: every decision's target is the result
    np.testing.assert_allclose(monte_carlo.returns, np.full(6, episode.reward), rtol=1e-6)


def test_shaping_credits_a_decision_with_the_engines_evaluation_changing_after_it() -> None:
    """The potential's change joins the policy's advantage; the value head's targets stay the
    game's lambda-returns; a cut episode carries the evaluation where it was cut."""
    from magerl.learner.ppo import EVALUATION_SCALE, gae, make_batch

    episode = synthetic_episode(np.random.default_rng(0), steps=6, objects=2, candidates=2)
    episode.arrays["values"] = np.zeros(6, np.float32)
    episode.arrays["evaluations"] = np.array([0, 0, 40, 40, -40, -40], np.float32)
    plain, shaped = make_batch([episode], 0.0), make_batch([episode], 0.0, shaping=0.5)
    np.testing.assert_allclose(shaped.returns, plain.returns)
    # lambda 0: each decision's own change of potential; the last one's goes to 0, the game's end
    phi = np.tanh(episode.arrays["evaluations"] / EVALUATION_SCALE)
    raw = gae(episode.arrays["values"], episode.reward, 0.0) + 0.5 * (np.append(phi[1:], 0.0) - phi)
    np.testing.assert_allclose(shaped.advantages, (raw - raw.mean()) / (raw.std() + 1e-6), rtol=1e-5)
    assert shaped.advantages[1] > shaped.advantages[0] and shaped.advantages[3] < shaped.advantages[2]
    head, tail = episode.split(3)
    assert head.bootstrap_evaluation == 40 and tail.bootstrap_evaluation is None
    np.testing.assert_allclose(make_batch([head, tail], 0.0, shaping=0.5).advantages, shaped.advantages, rtol=1e-5)
    del episode.arrays["evaluations"]  # an older worker's episode: no shaping, no error
    np.testing.assert_allclose(make_batch([episode], 0.0, shaping=0.5).advantages, plain.advantages)


def test_a_discount_counts_a_result_less_the_further_it_lies_ahead() -> None:
    """gamma < 1: lambda 1 credits a decision with gamma**k times the result k decisions on;
    a cut part discounts the value it bootstraps from; shaping discounts the potential."""
    from magerl.learner.ppo import EVALUATION_SCALE, gae, make_batch

    values = np.array([0.0, 0.5, -0.5], np.float32)
    np.testing.assert_allclose(gae(values, 1.0, 1.0, 0.9), [0.81, 0.9, 1.0] - values, rtol=1e-6)
    np.testing.assert_allclose(gae(values, 1.0, 0.0, 0.9), [0.45, -0.95, 1.5], rtol=1e-6)
    np.testing.assert_allclose(gae(values, 1.0, 0.0, 0.9, cut=True), [0.45, -0.95, 1.4], rtol=1e-6)
    episode = synthetic_episode(np.random.default_rng(0), steps=6, objects=2, candidates=2)
    episode.arrays["values"] = np.linspace(-0.5, 0.5, 6, dtype=np.float32)
    head, tail = episode.split(4)
    whole = gae(episode.arrays["values"], episode.reward, 0.0, 0.9) + episode.arrays["values"]
    np.testing.assert_allclose(make_batch([head, tail], 0.0, gamma=0.9).returns, whole, rtol=1e-6)
    # lambda 1: the result, discounted, where the game ends; the discounted value where it was cut
    monte_carlo = make_batch([head, tail], 1.0, gamma=0.9).returns
    np.testing.assert_allclose(monte_carlo[4:], [0.9 * episode.reward, episode.reward], rtol=1e-6)
    np.testing.assert_allclose(monte_carlo[:4], 0.9 ** np.arange(4, 0, -1) * episode.arrays["values"][4], rtol=1e-6)
    episode.arrays["values"] = np.zeros(6, np.float32)
    episode.arrays["evaluations"] = np.array([0, 0, 40, 40, -40, -40], np.float32)
    phi = np.tanh(episode.arrays["evaluations"] / EVALUATION_SCALE)
    raw = gae(episode.arrays["values"], episode.reward, 0.0, 0.9) + 0.5 * (0.9 * np.append(phi[1:], 0.0) - phi)
    shaped = make_batch([episode], 0.0, shaping=0.5, gamma=0.9)
    np.testing.assert_allclose(shaped.advantages, (raw - raw.mean()) / (raw.std() + 1e-6), rtol=1e-5)
    head, tail = episode.split(3)
    np.testing.assert_allclose(make_batch([head, tail], 0.0, shaping=0.5, gamma=0.9).advantages, shaped.advantages,
                               rtol=1e-5)


def test_updates_log_the_training_games_results_by_opponent() -> None:
    """A game cut across two batches counts once, in the batch that holds its end."""
    from magerl.learner.server import results_by_opponent
    rng = np.random.default_rng(0)
    won, lost, cut = (synthetic_episode(rng, steps=4, objects=2, candidates=2) for _ in range(3))
    won.reward, lost.reward, cut.reward = 1.0, -1.0, 1.0
    lost.meta = {**lost.meta, "opponent": "engine:easy"}
    head, tail = cut.split(2)
    assert results_by_opponent([won, lost, head]) == {"synthetic": [1, 1], "engine:easy": [0, 1]}
    assert results_by_opponent([tail]) == {"synthetic": [1, 1]}


def test_train_view_tallies_the_training_games_from_the_update_events(tmp_path) -> None:
    from magerl.train import Child, Trainer, TrainOptions

    trainer = Trainer(TrainOptions(run_dir=tmp_path))
    learner = Child("learner", [], tmp_path / "learner.log")
    learner.history = [{"event": "learner_ready"},
                       *({"event": "update", "results": {"engine:easy": [w, 2]}} for w in (0, 0, 1, 2, 2)),
                       {"event": "update", "results": {}}, {"event": "checkpoint_saved"}]
    trainer.children = [learner]
    assert trainer._training_results() == {"engine:easy": [5, 10]}
    assert trainer._training_results(window=4) == {"engine:easy": [4, 4]}  # the newest games first
