"""Match running, statistics and the `magerl play` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from magerl.cli import build_parser
from magerl.game.agents import EngineAIAgent, RandomAgent, make_agent
from magerl.game.play import run_match, schedule, summarize, wilson


def test_schedule_balances_decks_and_seats() -> None:
    specs = list(schedule(4, 24, seed=10))
    assert [s.seed for s in specs] == list(range(10, 34))
    # each agent plays each deck equally often, from each seat equally often
    for agent in (0, 1):
        assert Counter(s.decks[agent] for s in specs) == {d: 6 for d in range(4)}
        assert Counter(s.agent_seats[agent] for s in specs) == {0: 12, 1: 12}
    assert all(s.decks[0] != s.decks[1] for s in specs)
    assert {s.decks for s in schedule(1, 4, seed=0)} == {(0, 0)}  # one deck: mirror matches


def test_schedule_with_first_decks_gives_agent_0_only_those() -> None:
    full = list(schedule(4, 24, seed=0))
    specs = list(schedule(4, 12, seed=0, first_decks=[2]))
    assert {s.decks[0] for s in specs} == {2}
    # deck 2's games of a full schedule, twice over: every other deck, from both seats
    assert Counter((s.decks, s.agent_seats) for s in specs) == {
        key: 2 for key in Counter((s.decks, s.agent_seats) for s in full if s.decks[0] == 2)}
    assert Counter(s.decks[0] for s in schedule(4, 12, seed=0, first_decks=[0, 3])) == {0: 6, 3: 6}


def test_wilson_interval() -> None:
    low, high = wilson(86, 100)
    assert low == pytest.approx(0.779, abs=1e-3) and high == pytest.approx(0.915, abs=1e-3)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    assert wilson(0, 0) == (0.0, 1.0)


def test_agent_specs() -> None:
    assert isinstance(make_agent("random"), RandomAgent)
    agent = make_agent("engine:veryeasy:0.05")
    assert isinstance(agent, EngineAIAgent) and agent.epsilon == 0.05 and agent.name == "engine:veryeasy:0.05"
    for bad in ("engine", "engine:godlike", "engine:easy:x", "engine:easy:2", "mcts", "greedy:", "policy:"):
        with pytest.raises(ValueError):
            make_agent(bad)


def test_inline_match_report(cards, decks) -> None:
    chosen = [decks["white-weenie"], decks["mono-red-burn"]]
    records = run_match(cards, chosen, ["random", "random"], games=4, seed=5, jobs=1, progress=False)
    assert [r.spec.index for r in records] == [0, 1, 2, 3]
    report = summarize(records, ["random", "random"], chosen, seed=5, jobs=1, seconds=1.0)
    a, b = report.overall
    assert a["wins"] == b["losses"] and a["losses"] == b["wins"]
    assert a["wins"] + a["losses"] + a["draws"] + a["aborted"] == 4
    assert sum(s["games"] for s in report.per_deck[0].values()) == 4


def magerl(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "magerl.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_cli_play_json_with_two_processes() -> None:
    proc = magerl("play", "--deck", "white-weenie", "--deck", "green-stompy", "--agent", "random",
                  "--agent", "engine:veryeasy", "--games", "4", "--jobs", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert "4/4 games" in proc.stderr  # progress on long matches, kept out of the JSON
    assert report["games"] == 4 and report["agents"] == ["random", "engine:veryeasy"]
    assert set(report["per_deck"][0]) == {"white-weenie", "green-stompy"}
    assert report["decisions"] > 0 and report["decisions_per_second"] > 0
    overall = report["overall"][1]
    assert overall["games"] == 4 and 0 <= overall["ci95"][0] <= overall["ci95"][1] <= 1


def test_cli_play_text_and_usage_errors() -> None:
    proc = magerl("play", "--deck", "white-weenie", "--deck", "mono-red-burn", "--agent", "random",
                  "--agent", "random", "--games", "2", "--jobs", "1")
    assert proc.returncode == 0, proc.stderr
    assert "1: random" in proc.stdout and "95% CI" in proc.stdout and "decisions" in proc.stdout
    assert magerl("play", "--agent", "random").returncode == 2
    bad = magerl("play", "--agent", "random", "--agent", "engine:godlike", "--games", "1")
    assert bad.returncode == 2 and "unknown difficulty" in bad.stderr


def _processes() -> list[tuple[int, int, int]]:
    """(pid, parent, process group) of every live process, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    state, parent, group = stat.read().rsplit(")", 1)[1].split()[:3]
            except OSError:
                continue
            if state != "Z":
                found.append((int(entry), int(parent), int(group)))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads child processes from /proc")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_sent_to_the_main_process_alone_ends_a_match_and_its_game_processes(signum: int) -> None:
    """`kill` or `kill -INT` (a scheduler, a supervisor) reaches only the main process: the queued
    games are dropped, not played to the end first, and no game process plays on orphaned."""
    proc = subprocess.Popen([sys.executable, "-m", "magerl.cli", "play", "--agent", "random", "--agent", "random",
                             "--games", "400", "--jobs", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            # a shell's background job (nohup, `cmd &`) ignores SIGINT, and the ignore is inherited
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while sum(parent == proc.pid for _, parent, _ in _processes()) < 3:  # the resource tracker and two game processes
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "timeout"
        time.sleep(0.2)
    time.sleep(2)  # games in play
    proc.send_signal(signum)
    try:
        _, stderr = proc.communicate(timeout=90)  # the games in play finish; 400 would take many minutes
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the game processes too: they hold the pipes open
        proc.communicate()
        pytest.fail("the match, or its orphaned game processes, went on playing after the stop")
    assert proc.returncode == 130 and "interrupted" in stderr
    deadline = time.monotonic() + 30
    while left := [pid for pid, _, group in _processes() if group == proc.pid]:
        assert time.monotonic() < deadline, f"game processes left running: {left}"
        time.sleep(0.2)


def test_every_help_text_renders() -> None:
    """argparse formats argument help with %, not descriptions: a '%%' there prints as is."""
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # argparse keeps no public list of them
    texts = [parser.format_help()]
    for command in commands.values():
        texts.append(command.format_help())
        nested = command._subparsers._group_actions[0].choices.values() if command._subparsers else ()
        texts += [sub.format_help() for sub in nested]
    assert len(texts) > len(commands) > 5
    assert not [text.splitlines()[0] for text in texts if "%%" in text]


@pytest.mark.slow
def test_easy_engine_ai_beats_random(cards, decks) -> None:
    """engine-notes: Easy beats random ~92%; 48 games over all standard pairings."""
    records = run_match(cards, list(decks.values()), ["random", "engine:easy"], games=48, seed=1, jobs=2, progress=False)
    report = summarize(records, ["random", "engine:easy"], list(decks.values()), seed=1, jobs=2, seconds=0)
    easy = report.overall[1]
    assert easy["aborted"] <= 2
    assert easy["win_rate"] >= 0.7, easy
