"""Behaviour cloning: teacher games are recorded faithfully, files are read safely, the fit learns."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from magerl.game.agents import EngineAIAgent, RandomAgent, make_agent, parse_mix
from magerl.game.session import GameSession
from magerl.learner import checkpoint, imitation
from magerl.learner.imitation import FitConfig, TeacherGame, agreement, fit, holdout_split, read_episodes, record
from magerl.learner.ppo import make_batch
from magerl.model.encoding import encode
from magerl.model.network import ModelConfig, PolicyNet
from magerl.model.synthetic import synthetic_episode
from magerl.transport.messages import MessageError

SMALL = ModelConfig(d_model=16, layers=1, heads=2)
DECKS = ("white-weenie", "mono-red-burn")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, cards, decks):
    """Two easy-teacher games: one against random (one seat recorded), one mirror (both seats)."""
    out = tmp_path_factory.mktemp("bc") / "teacher.bin"
    plan = [TeacherGame(seed=3, teacher="engine:easy", opponent="random", epsilon=0.0, decks=(0, 1), teacher_seat=1),
            TeacherGame(seed=4, teacher="engine:easy", opponent="engine:easy", epsilon=0.0, decks=(1, 0), teacher_seat=0)]
    totals = record(str(cards.path), {d: decks[d].cards() for d in DECKS}, plan, out, jobs=1)
    return out, totals


def test_record_keeps_the_teachers_choices(recorded, engine, decks) -> None:
    out, totals = recorded
    episodes = list(read_episodes(out))
    assert totals["games"] == 2 and totals["aborted"] == 0
    assert totals["episodes"] == len(episodes) == 3  # the mirror game gave both seats
    assert totals["decisions"] == sum(e.length for e in episodes) > 0
    assert json.loads((out.parent / "teacher.bin.json").read_text())["decisions"] == totals["decisions"]
    assert {e.reward for e in episodes} <= {-1.0, 0.0, 1.0}

    # Replay the first game: the recorded actions are what the engine's AI chose, decision by decision.
    first = next(e for e in episodes if e.meta["seed"] == 3)
    session = GameSession(engine, (decks[DECKS[0]].cards(), decks[DECKS[1]].cards()), seed=3)
    teacher, opponent = EngineAIAgent("easy"), RandomAgent(seed=3)
    expected, candidates = [], []
    while (decision := session.next_decision()) is not None:
        if decision.seat == 1:
            index = teacher.act(decision)
            expected.append(index)
            candidates.append(len(encode(decision.observation, decision.candidates).kinds))
        else:
            index = opponent.act(decision)
        session.choose(decision, index)
    assert list(first.arrays["actions"]) == expected
    assert list(first.arrays["candidate_counts"]) == candidates


def test_a_recorded_games_opponent_and_explorer_are_told_their_decks(engine, decks, monkeypatch) -> None:
    """A policy set as the opponent or the explorer plays with the network of the deck its seat is dealt."""
    from magerl.game.session import Limits

    for key, value in {"engine": engine, "decks": [decks[d].cards() for d in DECKS], "names": list(DECKS),
                       "limits": Limits(max_turns=2)}.items():
        monkeypatch.setitem(imitation._proc, key, value)
    dealt: dict[str, str | None] = {}

    def agent(spec: str, seed: int | None = None, deck: str | None = None) -> RandomAgent:
        dealt[spec] = deck
        return RandomAgent(seed)

    monkeypatch.setattr(imitation, "make_agent", agent)
    game = TeacherGame(seed=5, teacher="engine:easy", opponent="policy:a-set", epsilon=0.5, decks=(1, 0),
                       teacher_seat=1, explorer="policy:b-set")
    imitation.play_teacher_game(game)
    assert dealt == {"policy:a-set": DECKS[1], "policy:b-set": DECKS[0]}  # seat 0 plays DECKS[1], seat 1 DECKS[0]


def test_dagger_plays_the_explorers_moves_and_keeps_the_teachers_labels(tmp_path, cards, engine, decks) -> None:
    policy = checkpoint.save(tmp_path / "bc", 0, PolicyNet(SMALL), None, {"version": 0})
    game = TeacherGame(seed=5, teacher="engine:easy", opponent="random", epsilon=1.0, decks=(0, 1), teacher_seat=0,
                       explorer=f"policy:{policy}")
    earlier = {"games": 5, "aborted": 0, "episodes": 0, "decisions": 0, "seconds": 9.0, "runs": [{"games": 5}]}
    (tmp_path / "dagger.bin.json").write_text(json.dumps(earlier))  # a file earlier runs appended to
    (tmp_path / "dagger.bin").write_bytes(imitation.FRAME.pack(5000) + b"half a frame")  # ... one of them killed
    ticks: list[int] = []
    totals = record(str(cards.path), {d: decks[d].cards() for d in DECKS}, [game], tmp_path / "dagger.bin", jobs=1,
                    progress=lambda done, summary: ticks.append(done))
    assert ticks == [1] and totals["games"] == 6 and len(totals["runs"]) == 2  # progress counts this run's plan
    [episode] = list(read_episodes(tmp_path / "dagger.bin"))
    assert episode.meta["explorer"] == f"policy:{policy}"

    session = GameSession(engine, (decks[DECKS[0]].cards(), decks[DECKS[1]].cards()), seed=5)
    teacher, explorer, opponent = EngineAIAgent("easy"), make_agent(f"policy:{policy}", seed=6), RandomAgent(seed=5)
    labels, played = [], []
    while (decision := session.next_decision()) is not None:
        if decision.seat == 0:
            labels.append(teacher.act(decision))
            played.append(explorer.act(decision))
            index = played[-1]
        else:
            index = opponent.act(decision)
        session.choose(decision, index)
    assert list(episode.arrays["actions"]) == labels
    assert labels != played  # the untrained policy went its own way; the labels are still the teacher's


def test_a_teacher_deck_puts_the_teacher_on_it_and_records_only_its_play(tmp_path, cards, decks) -> None:
    """Data for one deck's network: the teacher plays that deck against every deck, and a
    mirror game records only the seat that plays it."""
    plan = imitation.teacher_games("engine:easy", {"engine:easy": 1.0, "random": 1.0}, 40, 4, seed=9, epsilon=0.0,
                                   teacher_decks=(2,))
    assert all(g.decks[g.teacher_seat] == 2 for g in plan)
    assert {g.decks[1 - g.teacher_seat] for g in plan} == {0, 1, 2, 3} and {g.teacher_seat for g in plan} == {0, 1}
    # without teacher decks the plan is what it always was: recordings stay reproducible from their seeds
    assert [g.decks for g in imitation.teacher_games("engine:easy", {"random": 1.0}, 3, 4, 9, 0.0)] == [
        (2, 2), (0, 2), (0, 2)]

    mirror = TeacherGame(seed=4, teacher="engine:easy", opponent="engine:easy", epsilon=0.0, decks=(1, 0),
                         teacher_seat=0, teacher_decks=(0,))
    totals = record(str(cards.path), {d: decks[d].cards() for d in DECKS}, [mirror], tmp_path / "one.bin", jobs=1)
    [episode] = list(read_episodes(tmp_path / "one.bin"))
    assert totals["episodes"] == 1 and totals["decisions"] == episode.length > 0
    both = TeacherGame(seed=4, teacher="engine:easy", opponent="engine:easy", epsilon=0.0, decks=(1, 0),
                       teacher_seat=0)
    record(str(cards.path), {d: decks[d].cards() for d in DECKS}, [both], tmp_path / "two.bin", jobs=1)
    seats = list(read_episodes(tmp_path / "two.bin"))
    assert len(seats) == 2  # seats in order: the one kept above is seat 1's, which plays deck 0
    assert list(episode.arrays["actions"]) == list(seats[1].arrays["actions"]) != list(seats[0].arrays["actions"])


def test_read_stops_at_a_torn_frame_and_rejects_garbage(recorded, tmp_path) -> None:
    out, _ = recorded
    data = out.read_bytes()
    torn = tmp_path / "torn.bin"
    torn.write_bytes(data[:-10])  # an interrupted recording
    assert len(list(read_episodes(torn))) == 2
    bad = tmp_path / "bad.bin"
    bad.write_bytes(imitation.FRAME.pack(5) + b"\xc1garb")
    with pytest.raises(MessageError):
        list(read_episodes(bad))


def test_fit_learns_to_agree_with_the_teacher(recorded) -> None:
    out, _ = recorded
    episodes = list(read_episodes(out))
    torch.manual_seed(0)
    model = PolicyNet(SMALL)
    batch = make_batch(episodes)
    before = agreement(model, batch)
    epochs: list[dict[str, float]] = []
    figures = fit(model, episodes, FitConfig(epochs=25, batch=64, lr=3e-3, holdout=0.0),
                  on_epoch=lambda epoch, f: epochs.append(f))
    assert len(epochs) == 25 and figures["loss"] < epochs[0]["loss"]
    after = agreement(model, batch)
    assert after > before + 0.2 and after > 0.6, (before, after)


def test_parse_mix() -> None:
    assert parse_mix("engine:medium=0.5, random=0.5") == {"engine:medium": 0.5, "random": 0.5}
    for bad, message in (("random", "AGENT=WEIGHT"), ("engine:godlike=1", "unknown difficulty"),
                         ("random=x", "not a number"), ("random=-1", "negative"), ("random=0", "zero")):
        with pytest.raises(ValueError, match=message):
            parse_mix(bad)


def magerl(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "magerl.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_cli_record_stops_on_sigterm_keeping_whole_games(tmp_path) -> None:
    """`kill` (a scheduler, a container stop) ends a recording as Ctrl-C does: the games written stay readable."""
    data, ledger = tmp_path / "teacher.bin", tmp_path / "teacher.bin.json"
    proc = subprocess.Popen([sys.executable, "-m", "magerl.cli", "imitate", "record", "--out", str(data), "--teacher",
                             "engine:veryeasy", "--opponents", "random=1", "--games", "200", "--jobs", "1",
                             *[a for d in DECKS for a in ("--deck", d)]], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 300
    while not (ledger.exists() and json.loads(ledger.read_text())["games"] >= 1):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "timeout"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "interrupted" in stderr
    totals = json.loads(ledger.read_text())
    assert 1 <= totals["games"] < 200
    assert len(list(read_episodes(data))) == totals["episodes"]


def test_cli_record_fit_then_play_the_policy(tmp_path) -> None:
    data = tmp_path / "teacher.bin"
    proc = magerl("imitate", "record", "--out", str(data), "--teacher", "engine:veryeasy", "--opponents", "random=1",
                  "--games", "2", "--jobs", "2", *[a for d in DECKS for a in ("--deck", d)])
    assert proc.returncode == 0, proc.stderr
    assert "2 games (0 aborted)" in proc.stdout
    proc = magerl("imitate", "fit", "--data", str(data), "--out", str(tmp_path / "bc"), "--epochs", "2",
                  "--d-model", "16", "--layers", "1", "--heads", "2")
    assert proc.returncode == 0, proc.stderr
    assert "epoch 2/2" in proc.stdout and "held-out" in proc.stdout
    ckpt = checkpoint.find(str(tmp_path / "bc"))
    [recording] = ckpt.state["recipe"]["recordings"]
    assert recording["runs"] == [{"teacher": "engine:veryeasy", "opponents": {"random": 1.0}, "epsilon": 0.05,
                                  "explore": "random", "seed": 1, "decks": list(DECKS), "teacher_decks": None,
                                  "games": 2, "jobs": 2}]
    compute = ckpt.state["recipe"]["compute"]
    assert compute["episodes"] == 2 and compute["decisions"] > 0 and compute["seconds"] > compute["fit_seconds"] > 0
    assert ckpt.state["recipe"]["teacher"] == ["engine:veryeasy"]
    proc = magerl("play", "--agent", f"policy:{tmp_path / 'bc'}", "--agent", "random", "--games", "1", "--jobs", "1",
                  "--deck", DECKS[0], "--deck", DECKS[1])
    assert proc.returncode == 0, proc.stderr
    assert "time to choose per decision" in proc.stdout

    # DAgger: the policy plays, the teacher labels; the fit continues from the policy and counts its cost
    dagger = tmp_path / "dagger.bin"
    proc = magerl("imitate", "record", "--out", str(dagger), "--teacher", "engine:veryeasy", "--opponents", "random=1",
                  "--explore", f"policy:{tmp_path / 'bc'}", "--epsilon", "0.5", "--games", "2", "--jobs", "2",
                  *[a for d in DECKS for a in ("--deck", d)])
    assert proc.returncode == 0, proc.stderr
    proc = magerl("imitate", "fit", "--data", str(dagger), "--out", str(tmp_path / "bc2"), "--epochs", "1",
                  "--init-from", str(tmp_path / "bc"))
    assert proc.returncode == 0, proc.stderr
    second = checkpoint.find(str(tmp_path / "bc2"))
    assert second.model.config == SMALL  # the starting point's size, not the default's
    assert second.state["recipe"]["base"]["recipe"]["compute"] == compute
    assert second.state["recipe"]["compute"]["episodes"] == compute["episodes"] + 2

    for args, message in ((("record", "--out", str(data), "--teacher", "random"), "engine:DIFFICULTY"),
                          (("record", "--out", str(data), "--opponents", "random"), "AGENT=WEIGHT"),
                          (("record", "--out", str(data), "--explore", "policy:/nowhere"), "no checkpoint found"),
                          (("record", "--out", str(data), "--teacher-deck", "mono-blue"), "--teacher-deck 'mono-blue'"),
                          (("fit", "--data", str(data), "--out", str(tmp_path), "--init-from", "/nowhere"),
                           "--init-from"),
                          (("fit", "--data", str(tmp_path / "missing.bin"), "--out", str(tmp_path)), "missing.bin")):
        proc = magerl("imitate", *args)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_shipped_policy_loads_with_its_recipe(engine, decks) -> None:
    """`policy:default` works out of the box, and says how it was made and what it cost."""
    shipped = checkpoint.shipped_policy()
    ckpt = checkpoint.find("default")
    assert ckpt.path == shipped / checkpoint.OTHERS  # a policy set: with no deck known, its others network
    # each standard deck's network, PPO on from the others' with its deck alone, in one run or more;
    # any other deck plays the others'
    members = {deck: checkpoint.find("default", deck)
               for deck in ("mono-red-burn", "dimir-control", "white-weenie", "green-stompy")}
    runs = {}  # each deck network's runs since the others' network, newest first
    for deck, member in members.items():
        runs[deck] = [member.state["recipe"]]
        while runs[deck][-1]["base"]["recipe"] != ckpt.state["recipe"]:
            runs[deck].append(runs[deck][-1]["base"]["recipe"])
        assert member.path.name == f"deck-{deck}"
        assert all(any(f"--policy-deck {deck}" in c for c in run["commands"]) for run in runs[deck])
    assert checkpoint.find("default", "my-own-deck").path == ckpt.path
    for member in (ckpt, *members.values()):
        assert (member.path / "model.safetensors").stat().st_size < 4 * 2**20  # small enough to ship in the package
    whole = json.loads((shipped / checkpoint.SET_FILE).read_text())["recipe"]["compute"]
    for key in ("episodes", "seconds"):  # the set's cost: the others' whole, each deck network's own runs on top
        assert whole[key] == pytest.approx(ckpt.state["recipe"]["compute"][key] + sum(
            run["compute"][f"ppo_{key}"] for deck_runs in runs.values() for run in deck_runs),
            abs=0.2)  # a run's seconds are kept to the millisecond, the set's to a tenth
    recipe = ckpt.state["recipe"]  # PPO fine-tuning of a clone: its own cost plus the clone's
    assert recipe["method"] == "PPO from behaviour cloning" and recipe["ppo"]["gae_lambda"] == 0.95
    clone = recipe["base"]["recipe"]
    assert clone["method"] == "behaviour cloning" and clone["teacher"] == ["engine:hard", "engine:medium"]
    assert clone["compute"]["episodes"] == sum(r["episodes"] for r in clone["recordings"]) > 0
    assert clone["compute"]["record_seconds"] == pytest.approx(sum(r["seconds"] for r in clone["recordings"]), abs=0.2)
    assert clone["compute"]["seconds"] == pytest.approx(clone["compute"]["record_seconds"] + clone["compute"]["fit_seconds"], abs=0.2)
    compute = recipe["compute"]
    assert compute["episodes"] == clone["compute"]["episodes"] + compute["ppo_episodes"] == ckpt.state["episodes"] + clone["compute"]["episodes"]
    assert compute["seconds"] == pytest.approx(clone["compute"]["seconds"] + compute["ppo_seconds"], abs=0.2)
    assert 0 < sum(games for _, games in recipe["training_games"].values()) <= compute["ppo_episodes"]
    assert any(c.startswith("magerl imitate fit") for c in recipe["commands"])
    assert any(c.startswith("magerl train") and "--init-from default" in c for c in recipe["commands"])
    agent = make_agent("policy:default", seed=0)
    session = GameSession(engine, (decks["white-weenie"].cards(), decks["green-stompy"].cards()), seed=1)
    decision = session.next_decision()
    assert decision is not None and 0 <= agent.act(decision) < len(decision.candidates)


def test_init_from_must_name_a_checkpoint(tmp_path) -> None:
    for command in (("train", "--run-dir", str(tmp_path / "run"), "--updates", "1"),
                    ("learner", "--checkpoint-dir", str(tmp_path / "ckpt"), "--metrics-port", "0")):
        proc = magerl(*command, "--init-from", str(tmp_path / "nowhere"), timeout=120)
        assert proc.returncode == 2 and "--init-from" in proc.stderr and "no checkpoint found" in proc.stderr


def test_train_hands_its_learner_the_start_and_learning_rate(tmp_path, monkeypatch) -> None:
    """Fine-tuning a clone with PPO: `train --init-from ... --lr ...` reaches the learner's own options."""
    import magerl.learner.server
    import magerl.train
    from magerl.cli import build_parser, main

    started = []
    monkeypatch.setattr(magerl.train, "Trainer", lambda options: started.append(options) or type(
        "Started", (), {"run": staticmethod(lambda: 0)}))
    assert main(["train", "--run-dir", str(tmp_path / "run"), "--updates", "1", "--init-from", "default",
                 "--lr", "5e-05", "--gae-lambda", "0.9", "--gamma", "0.99", "--ppo-epochs", "4",
                 "--entropy-coef", "0.03", "--shaping", "0.5"]) == 0
    learner = build_parser().parse_args(["learner", *started[0].learner_args])
    assert learner.lr == 5e-05 and learner.gae_lambda == 0.9 and learner.gamma == 0.99 and learner.ppo_epochs == 4
    assert learner.entropy_coef == 0.03 and learner.shaping == 0.5
    assert learner.init_from == "default"
    # kept in the checkpoints' recipe
    assert learner.recipe_command == (f"magerl train --run-dir {tmp_path / 'run'} --updates 1 --init-from default "
                                      "--lr 5e-05 --gae-lambda 0.9 --gamma 0.99 --ppo-epochs 4 --entropy-coef 0.03 "
                                      "--shaping 0.5")
    # a bad value is refused by the command it was typed to; train starts nothing
    for command in (["learner", "--checkpoint-dir", str(tmp_path / "ckpt")],
                    ["train", "--run-dir", str(tmp_path / "bad"), "--updates", "1"]):
        for bad in (["--gae-lambda", "1.5"], ["--ppo-epochs", "0"], ["--gamma", "0"], ["--gamma", "1.01"],
                    ["--entropy-coef", "-0.1"], ["--shaping", "-1"]):
            assert main([*command, *bad]) == 2, bad
    assert len(started) == 1 and not (tmp_path / "bad").exists()
    configs = []
    monkeypatch.setattr(magerl.learner.server, "run_learner", lambda config, **_: configs.append(config))
    assert main(["learner", "--checkpoint-dir", str(tmp_path / "ckpt"), *started[0].learner_args]) == 0
    assert configs[0].ppo.epochs == 4 and configs[0].ppo.gae_lambda == 0.9 and configs[0].ppo.lr == 5e-05
    assert configs[0].ppo.entropy_coef == 0.03 and configs[0].ppo.shaping == 0.5 and configs[0].ppo.gamma == 0.99
    # the shipped policy is a set: a run on one of its decks continues that deck's network
    for decks, member in (([], "others"), (["mono-red-burn"], "deck-mono-red-burn"),
                          (["green-stompy"], "deck-green-stompy")):
        started.clear()
        assert main(["train", "--run-dir", str(tmp_path / "run"), "--updates", "1", "--init-from", "default",
                     *(f"--policy-deck={d}" for d in decks)]) == 0
        given = build_parser().parse_args(["learner", *started[0].learner_args]).init_from
        assert checkpoint.find(given).path.name == member, (decks, given)


def test_holdout_split_names_the_games_fit_holds_out() -> None:
    """bench/imitation_agreement.py scores policies on the games `fit` never trained on."""
    import numpy as np

    rng = np.random.default_rng(0)
    episodes = [synthetic_episode(rng, steps=3 + i, objects=4, candidates=3) for i in range(10)]
    figures = fit(PolicyNet(SMALL), episodes, FitConfig(epochs=1, holdout=0.3, seed=5))
    held, trained = holdout_split(np.random.default_rng(5), len(episodes), 0.3)
    assert figures["holdout_decisions"] == sum(episodes[i].length for i in held)  # lengths differ: the same games
    assert sorted([*held, *trained]) == list(range(10))


def test_live_agreement_asks_the_teacher_in_the_policys_own_games() -> None:
    """bench/live_agreement.py plays the policy and tallies its choices beside the engine AI's."""
    import re

    script = Path(__file__).resolve().parent.parent / "bench" / "live_agreement.py"
    proc = subprocess.run([sys.executable, str(script), "--deck", "white-weenie", "--games", "2",
                           "--teacher", "easy"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    found = re.search(r"white-weenie: won (\d) of 2 against engine:easy; agrees with engine:easy on (\d+) of (\d+)",
                      proc.stdout)
    assert found and 0 < int(found[2]) <= int(found[3]), proc.stdout
    assert "DeclareAttackers" in proc.stdout and "most frequent disagreements" in proc.stdout
