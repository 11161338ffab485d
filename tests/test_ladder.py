"""The ladder report: per-opponent win rates with intervals, both agents' latency, compute, and the plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from magerl.evaluator.ladder import (deck_outcomes, difference, format_ladder, paired_counts, paired_difference,
                                     run_ladder, training_of)
from magerl.game.agents import make_agent
from magerl.game.play import run_match, schedule, wilson
from magerl.game.session import Limits
from magerl.learner import checkpoint
from magerl.model.network import ModelConfig, PolicyNet

SMALL = ModelConfig(d_model=16, layers=1, heads=2)


def bc_checkpoint(path, episodes: int, seconds: float):
    recipe = {"method": "behaviour cloning", "compute": {"episodes": episodes, "seconds": seconds}}
    return checkpoint.save(path, 0, PolicyNet(SMALL), None, {"version": 0, "recipe": recipe})


def test_ladder_report(tmp_path, cards, decks) -> None:
    path = bc_checkpoint(tmp_path / "bc", 120, 3600.0)
    chosen = [decks["white-weenie"], decks["green-stompy"]]
    report = run_ladder(cards, chosen, path, opponents=("random", "engine:veryeasy"), games=4, jobs=1, progress=False)
    assert report["training"] == {"episodes": 120, "seconds": 3600.0, "updates": 0, "method": "behaviour cloning"}
    assert list(report["opponents"]) == ["random", "engine:veryeasy"]
    for entry in report["opponents"].values():
        assert entry["games"] == 4 and entry["wins"] + entry["losses"] + entry["draws"] + entry["aborted"] == 4
        assert entry["decision_ms"]["policy"] > 0 and entry["decision_ms"]["opponent"] > 0
        assert set(entry["per_deck"]) == {"white-weenie", "green-stompy"}
        outcomes = entry["outcomes"]  # each game's, in schedule order: what `compare` pairs
        assert len(outcomes) == 4 and set(outcomes) <= set("WLDA")
        assert [outcomes.count(c) for c in "WLDA"] == [entry[k] for k in ("wins", "losses", "draws", "aborted")]
        assert sum(entry["aborted_by"].values()) == entry["aborted"]
    assert report["opponents"]["random"]["target"] == 0.95
    assert report["opponents"]["engine:veryeasy"]["target"] is None
    text = format_ladder(report)
    assert "engine:veryeasy" in text and "≥ 95%" in text
    json.dumps(report)  # JSON-ready

    # a resumed ladder keeps what was played and plays only the rest, in ladder order
    kept = {"random": report["opponents"]["random"]}
    resumed = run_ladder(cards, chosen, path, opponents=("random", "engine:veryeasy"), games=4, jobs=1,
                         progress=False, resume={**report, "opponents": kept})
    assert list(resumed["opponents"]) == ["random", "engine:veryeasy"]
    assert resumed["opponents"]["random"] is kept["random"]
    assert resumed["opponents"]["engine:veryeasy"]["games"] == 4
    # a kept opponent later in the ladder is in every save, not only once the loop reaches it
    saves: list[list[str]] = []
    later = {"engine:veryeasy": report["opponents"]["engine:veryeasy"]}
    resumed = run_ladder(cards, chosen, path, opponents=("random", "engine:veryeasy"), games=4, jobs=1,
                         progress=False, resume={**report, "opponents": later},
                         on_opponent=lambda r: saves.append(list(r["opponents"])))
    assert saves == [["random", "engine:veryeasy"]] and list(resumed["opponents"]) == saves[0]
    # a resume with another opponent adds its row and drops none of the report's
    added = run_ladder(cards, chosen, path, opponents=("engine:veryeasy",), games=4, jobs=1, progress=False,
                       resume={**report, "opponents": kept})
    assert list(added["opponents"]) == ["random", "engine:veryeasy"] and added["opponents"]["random"] is kept["random"]
    with pytest.raises(ValueError, match="games_per_opponent"):
        run_ladder(cards, chosen, path, opponents=("random",), games=8, progress=False, resume=report)

    # one deck's row: the policy plays only that deck; a full ladder cannot resume it
    one = run_ladder(cards, chosen, path, opponents=("random",), games=4, jobs=1, progress=False,
                     policy_decks=["green-stompy"])
    assert set(one["opponents"]["random"]["per_deck"]) == {"green-stompy"}
    assert "the policy plays only green-stompy" in format_ladder(one)
    with pytest.raises(ValueError, match="policy_decks"):
        run_ladder(cards, chosen, path, opponents=("random", "engine:veryeasy"), games=4, progress=False,
                   resume=one)


def test_ladder_counts_aborted_games_by_cap(tmp_path, cards, decks) -> None:
    path = bc_checkpoint(tmp_path / "bc", 1, 1.0)
    chosen = [decks["white-weenie"], decks["green-stompy"]]
    report = run_ladder(cards, chosen, path, opponents=("random",), games=2, jobs=1, progress=False,
                        limits=Limits(max_turns=2))
    entry = report["opponents"]["random"]
    assert entry["outcomes"] == "AA" and entry["aborted_by"] == {"max_turns": 2} and entry["win_rate"] is None
    assert "aborted against random: max_turns 2" in format_ladder(report)
    del entry["aborted_by"]  # a report from before the field still formats
    assert "aborted against" not in format_ladder(report)


def test_training_of_a_self_play_checkpoint(tmp_path) -> None:
    path = checkpoint.save(tmp_path / "run", 40, PolicyNet(SMALL), None, {"version": 40, "samples": 9000})
    training = training_of(path)
    assert training == {"episodes": None, "seconds": None, "updates": 40, "method": "self-play"}
    report = {"checkpoint": "run", "decision_rule": "sample", "training": training, "opponents": {}}
    assert "self-play, 40 updates, episodes not recorded, training compute not recorded" in format_ladder(report)


def magerl(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "magerl.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_cli_ladder_run_and_plot(tmp_path) -> None:
    reports = []
    for episodes in (50, 100):
        bc_checkpoint(tmp_path / f"bc{episodes}", episodes, episodes * 30.0)
        out = tmp_path / f"ladder{episodes}.json"
        proc = magerl("ladder", "run", "--checkpoint", str(tmp_path / f"bc{episodes}"), "--opponent", "random",
                      "--games", "2", "--jobs", "2", "--deck", "white-weenie", "--deck", "mono-red-burn",
                      "--out", str(out), *(["--greedy"] if episodes == 100 else []))
        assert proc.returncode == 0, proc.stderr
        assert "random" in proc.stdout and "ms/decision" in proc.stdout
        assert json.loads(out.read_text())["decision_rule"] == ("greedy" if episodes == 100 else "sample")
        reports.append(str(out))
    png = tmp_path / "curve.png"
    proc = magerl("ladder", "plot", *reports, "--out", str(png))
    first = json.loads(Path(reports[0]).read_text())["opponents"]
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    proc = magerl("ladder", "run", "--checkpoint", str(tmp_path / "bc50"), "--opponent", "random",
                  "--opponent", "engine:veryeasy", "--games", "2", "--jobs", "2", "--deck", "white-weenie",
                  "--deck", "mono-red-burn", "--out", reports[0], "--resume")
    assert proc.returncode == 0, proc.stderr
    resumed = json.loads(Path(reports[0]).read_text())["opponents"]
    assert list(resumed) == ["random", "engine:veryeasy"] and resumed["random"] == first["random"]
    bad = magerl("ladder", "run", "--checkpoint", str(tmp_path / "bc100"), "--opponent", "random", "--games", "2",
                 "--deck", "white-weenie", "--deck", "mono-red-burn", "--out", reports[0], "--resume")
    assert bad.returncode == 2 and "cannot resume" in bad.stderr
    bad = magerl("ladder", "run", "--checkpoint", str(tmp_path / "bc50"), "--resume")
    assert bad.returncode == 2 and "--resume needs --out" in bad.stderr
    bad = magerl("ladder", "run", "--checkpoint", str(tmp_path / "nowhere"))
    assert bad.returncode == 2 and "no checkpoint found" in bad.stderr
    bad = magerl("ladder", "run", "--checkpoint", str(tmp_path / "bc50"), "--deck", "white-weenie",
                 "--deck", "mono-red-burn", "--policy-deck", "green-stompy")
    assert bad.returncode == 2 and "'green-stompy' is not among the ladder's decks" in bad.stderr
    bad = magerl("ladder", "run", "--checkpoint", str(tmp_path / "bc50"), "--opponent", "engine:godlike")
    assert bad.returncode == 2 and "unknown difficulty" in bad.stderr
    (tmp_path / "junk.json").write_text("{}")
    bad = magerl("ladder", "plot", str(tmp_path / "junk.json"), "--out", str(png))
    assert bad.returncode == 2 and "not a ladder report" in bad.stderr


def test_compare_two_ladders(tmp_path) -> None:
    def report(name: str, wins: dict[str, int], games: int = 200) -> Path:
        entries = {o: {"win_rate": w / games, "ci95": list(wilson(w, games)), "wins": w, "games": games}
                   for o, w in wins.items()}
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"checkpoint": name, "decision_rule": "sample", "seed": 20000,
                                    "decks": ["white-weenie"], "opponents": entries}))
        return path

    a = report("a", {"random": 180, "engine:easy": 100, "engine:hard": 20})
    b = report("b", {"random": 150, "engine:easy": 96, "engine:medium": 50})
    d, low, high = difference(*(json.loads(p.read_text())["opponents"]["random"] for p in (a, b)))
    assert d == pytest.approx(0.15)
    # Newcombe (1998), method 10, by hand: 0.9 [0.85059, 0.93433] against 0.75 [0.68566, 0.80492]
    assert low == pytest.approx(0.15 - ((0.9 - 0.85059) ** 2 + (0.80492 - 0.75) ** 2) ** 0.5, abs=1e-4)
    assert high == pytest.approx(0.15 + ((0.93433 - 0.9) ** 2 + (0.75 - 0.68566) ** 2) ** 0.5, abs=1e-4)
    proc = magerl("ladder", "compare", str(a), str(b))
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[3:]}
    assert set(rows) == {"random", "engine:easy"}  # only the opponents both played
    assert rows["random"].endswith("A ahead, unpaired") and rows["engine:easy"].endswith("not separated, unpaired")
    bad = magerl("ladder", "compare", str(a), str(tmp_path / "missing.json"))
    assert bad.returncode == 2 and "missing.json" in bad.stderr
    bad = magerl("ladder", "compare", str(a), str(b), "--opponent-deck", "white-weenie")
    assert bad.returncode == 2 and "keeps no game outcomes" in bad.stderr


def test_paired_difference() -> None:
    # Altman et al., Statistics with Confidence (2000), table 6.2: 14 both, 5 only A, 0 only B,
    # 22 neither; Newcombe's paired method 10 gives 0.122 [0.011, 0.226] there.
    a, b = "W" * 14 + "W" * 5 + "L" * 22, "W" * 14 + "L" * 5 + "L" * 22
    d, low, high = paired_difference(a, b)
    assert (round(d, 3), round(low, 3), round(high, 3)) == (0.122, 0.011, 0.226)
    assert paired_counts(a, b) == (14, 5, 0, 22)
    # a game aborted on either side is left out of both; draws are games not won
    assert paired_difference(a + "AW", b + "WA") == (d, low, high)
    assert paired_difference("WD", "DW") == paired_difference("WL", "LW")
    with pytest.raises(ValueError, match="not the same schedule"):
        paired_difference("WL", "W")


def _easy_report(folder: Path, name: str, outcomes: str, seed: int) -> str:
    """A one-deck ladder report against engine:easy with these outcomes, written to `folder`:
    its path, as `magerl ladder compare` takes it."""
    wins, n = outcomes.count("W"), len(outcomes)
    entry = {"win_rate": wins / n, "ci95": list(wilson(wins, n)), "wins": wins, "games": n, "outcomes": outcomes}
    path = folder / f"{name}-{seed}.json"
    path.write_text(json.dumps({"checkpoint": name, "decision_rule": "sample", "seed": seed,
                                "decks": ["white-weenie"], "opponents": {"engine:easy": entry}}))
    return str(path)


def test_compare_pairs_the_games_of_one_schedule(tmp_path) -> None:
    """Two checkpoints that win and lose mostly the same games: paired, 12 points apart is a
    difference; counted as independent games, it is not."""
    a = "W" * 60 + "W" * 14 + "L" * 2 + "L" * 24  # 74 of 100
    b = "W" * 60 + "L" * 14 + "W" * 2 + "L" * 24  # 62 of 100, the same 60 won
    paired = magerl("ladder", "compare", _easy_report(tmp_path, "a", a, 40000), _easy_report(tmp_path, "b", b, 40000))
    assert paired.returncode == 0, paired.stderr
    lines = paired.stdout.splitlines()
    assert lines[-2].endswith("A ahead, paired (A alone 14, B alone 2)") and lines[-1].startswith("A alone, B alone:")
    unpaired = magerl("ladder", "compare", _easy_report(tmp_path, "a", a, 40000), _easy_report(tmp_path, "b", b, 50000))
    assert "different seeds" in unpaired.stdout
    assert unpaired.stdout.splitlines()[-1].endswith("not separated, unpaired")


def test_compare_pools_pairs_of_ladders_on_other_seeds(tmp_path) -> None:
    """Three seed sets, each 5 games ahead of 60 and not separated alone: pooled, their games
    joined and paired, the same lead is clear of zero. A pool that would count a game twice,
    or an odd number of reports, is refused."""
    a = "W" * 40 + "W" * 6 + "L" * 1 + "L" * 13
    b = "W" * 40 + "L" * 6 + "W" * 1 + "L" * 13

    pairs = [_easy_report(tmp_path, name, outcomes, seed) for seed in (40000, 50000, 60000)
             for name, outcomes in (("a", a), ("b", b))]
    proc = magerl("ladder", "compare", *pairs)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("engine:easy")]
    assert [row.split()[1] for row in rows] == ["40000", "50000", "60000", "pooled"]
    assert all(row.endswith("not separated, paired (A alone 6, B alone 1)") for row in rows[:3])
    d, low, high = paired_difference(a * 3, b * 3)
    assert low > 0 and f"[{low:+.1%}, {high:+.1%}]" in rows[3]
    assert rows[3].endswith("A ahead, paired (A alone 18, B alone 3)")
    assert "76.7% (180)" in rows[3] and "68.3% (180)" in rows[3]

    other = _easy_report(tmp_path, "b", b, 70000)  # the second pair's B: other seeds
    mixed = magerl("ladder", "compare", *pairs[:3], other)
    assert mixed.returncode == 0 and "a pair's ladders played different seeds" in mixed.stdout
    assert [line.split("separated, ")[1] for line in mixed.stdout.splitlines() if line.startswith("engine:easy")] == [
        "paired (A alone 6, B alone 1)", "unpaired", "unpaired"]  # a pool is paired only if every pair is

    twice = magerl("ladder", "compare", *pairs[:2], *pairs[:2])
    assert twice.returncode == 2 and "would count twice" in twice.stderr
    odd = magerl("ladder", "compare", *pairs[:3])
    assert odd.returncode == 2 and "in pairs" in odd.stderr


def test_compare_one_deck_of_two_set_ladders(tmp_path) -> None:
    """`compare --deck`: the games the policy played with one deck, picked out by the schedule
    (with two decks it cycles deck 0 twice, then deck 1 twice), paired; the other deck's games
    are the same in both, as a policy set with one new deck network plays them. `--opponent-deck`
    picks the games against one deck the same way."""
    decks = ["dimir-control", "white-weenie"]
    assert [g.decks[0] for g in schedule(2, 8, 40000)] == [0, 0, 1, 1] * 2
    # one deck's ladder (`--policy-deck`) of three: red twice, then white twice
    three = {"decks": ["dimir-control", "mono-red-burn", "white-weenie"], "seed": 40000,
             "policy_decks": ["dimir-control"]}
    assert deck_outcomes(three, "WWLLWWLD", opponent_deck="white-weenie") == "LLLD"
    assert deck_outcomes(three, "WWLLWWLD", "dimir-control", "mono-red-burn") == "WWWW"

    def report(name: str, first: str, second: str) -> Path:
        outcomes = "".join(first[k:k + 2] + second[k:k + 2] for k in range(0, len(first), 2))

        def entry(won: str) -> dict:
            return {"win_rate": won.count("W") / len(won), "ci95": list(wilson(won.count("W"), len(won))),
                    "wins": won.count("W"), "games": len(won)}
        opponent = {**entry(outcomes), "outcomes": outcomes,
                    "per_deck": {decks[0]: entry(first), decks[1]: entry(second)}}
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"checkpoint": name, "decision_rule": "sample", "seed": 40000,
                                    "decks": decks, "opponents": {"engine:easy": opponent}}))
        return path

    same = "W" * 50 + "L" * 50
    a = report("a", "W" * 60 + "W" * 14 + "L" * 2 + "L" * 24, same)  # dimir: 74 of 100
    b = report("b", "W" * 60 + "L" * 14 + "W" * 2 + "L" * 24, same)  # 62, the same 60 won
    dimir = magerl("ladder", "compare", str(a), str(b), "--deck", "dimir-control")
    assert dimir.returncode == 0, dimir.stderr
    assert "74.0% (100)" in dimir.stdout and "A ahead, paired (A alone 14, B alone 2)" in dimir.stdout
    white = magerl("ladder", "compare", str(a), str(b), "--deck", "white-weenie")
    assert "+0.0%" in white.stdout.splitlines()[-2]
    # with two decks, dimir's games are those against white, and white's those against dimir
    matchup = magerl("ladder", "compare", str(a), str(b), "--deck", "dimir-control", "--opponent-deck", "white-weenie")
    assert matchup.stdout.splitlines()[-2] == dimir.stdout.splitlines()[-2]
    against = magerl("ladder", "compare", str(a), str(b), "--opponent-deck", "dimir-control")
    assert against.stdout.splitlines()[-2] == white.stdout.splitlines()[-2]
    whole = magerl("ladder", "compare", str(a), str(b))
    assert "62.0% (200)" in whole.stdout  # 74 + 50 of both decks
    bad = magerl("ladder", "compare", str(a), str(b), "--deck", "mono-red-burn")
    assert bad.returncode == 2 and "not a deck of every ladder" in bad.stderr


def test_published_ladder_reports_are_of_the_shipped_policy() -> None:
    """docs/results.md reports these; replacing the shipped policy must come with a new ladder."""
    from pathlib import Path

    reports = sorted((Path(__file__).parent.parent / "docs" / "results").glob("ladder-default-*.json"))
    assert reports, "docs/results/ has no ladder report of the shipped policy"
    shipped = training_of(checkpoint.shipped_policy())
    for path in reports:
        report = json.loads(path.read_text())
        assert report["training"] == shipped, f"{path.name} is of another checkpoint: rerun magerl ladder run"
        assert report["decision_rule"] == "sample" and all(e["games"] >= 48 for e in report["opponents"].values())


def test_a_policy_set_plays_each_deck_with_its_network(tmp_path, cards, decks) -> None:
    """`magerl policy-set`: the listed deck plays with its network, every other deck with the
    others'; the ladder takes the set whole and counts the compute of all its networks."""
    torch.manual_seed(0)
    checkpoint.save(tmp_path / "general", 7, PolicyNet(SMALL), None, {"version": 7, "recipe": {
        "method": "PPO", "compute": {"episodes": 100, "seconds": 50.0}}})
    red = {"method": "PPO", "compute": {"episodes": 130, "seconds": 80.0},
           "base": {"recipe": {"compute": {"episodes": 100, "seconds": 50.0}}}}
    checkpoint.save(tmp_path / "red", 9, PolicyNet(SMALL), None, {"version": 9, "recipe": red})
    out = tmp_path / "set"
    proc = magerl("policy-set", "--out", str(out), "--others", str(tmp_path / "general"),
                  "--deck", f"mono-red-burn={tmp_path / 'red'}")
    assert proc.returncode == 0, proc.stderr
    assert "policy set written" in proc.stdout
    assert checkpoint.find(str(out), "mono-red-burn").state["version"] == 9
    assert checkpoint.find(str(out), "white-weenie").state["version"] == 7
    assert checkpoint.find(str(out)).state["version"] == 7  # no deck known: the others' network
    assert make_agent(f"policy:{out}", deck="mono-red-burn").version == 9
    assert checkpoint.locate(str(out)) == out
    training = training_of(out)
    assert training["method"] == "one policy per deck"
    assert (training["episodes"], training["seconds"]) == (130, 80.0)  # the red run counts only its own 30
    # a run continued from the red run: both red runs count, the others' training once
    checkpoint.save(tmp_path / "red2", 11, PolicyNet(SMALL), None, {"version": 11, "recipe": {
        "method": "PPO", "compute": {"episodes": 150, "seconds": 95.0}, "base": {"recipe": red}}})
    chained = checkpoint.write_policy_set(tmp_path / "chained", str(tmp_path / "general"),
                                          {"mono-red-burn": str(tmp_path / "red2")}, "test")
    assert (training_of(chained)["episodes"], training_of(chained)["seconds"]) == (150, 95.0)

    # in a match, each game's agent plays with its deck's network: the same games as the red checkpoint alone
    chosen = [decks["mono-red-burn"], decks["white-weenie"]]

    def games(spec: str) -> list[tuple]:
        records = run_match(cards, chosen, [spec, "random"], games=4, seed=5, progress=False, first_decks=[0])
        return [(r.result.winner, r.result.turns, r.result.decisions) for r in records]

    assert games(f"policy:{out}") == games(f"policy:{tmp_path / 'red'}") != games(f"policy:{tmp_path / 'general'}")

    # a set grows from another: given for a deck, a set gives its network for that deck
    grown = checkpoint.write_policy_set(tmp_path / "grown", str(out), {"mono-red-burn": str(out)}, "test")
    assert checkpoint.find(str(grown), "mono-red-burn").state["version"] == 9
    assert checkpoint.find(str(grown), "white-weenie").state["version"] == 7

    again = magerl("policy-set", "--out", str(out), "--others", str(tmp_path / "general"),
                   "--deck", f"mono-red-burn={tmp_path / 'red'}")
    assert again.returncode == 2 and "exists" in again.stderr
    bad = magerl("policy-set", "--out", str(tmp_path / "set2"), "--others", str(tmp_path / "general"),
                 "--deck", f"mono-blue={tmp_path / 'red'}")
    assert bad.returncode == 2 and "DECK=PATH" in bad.stderr
    bad = magerl("policy-set", "--out", str(tmp_path / "set2"), "--others", str(tmp_path / "general"),
                 "--deck", f"mono-red-burn={tmp_path / 'nowhere'}")
    assert bad.returncode == 2 and "no checkpoint found" in bad.stderr
    assert not (tmp_path / "set2").exists() and not (tmp_path / "set2.tmp").exists()
    (out / checkpoint.SET_FILE).write_text('{"decks": {}}')
    with pytest.raises(ValueError, match="not a policy set"):
        checkpoint.find(str(out), "mono-red-burn")
