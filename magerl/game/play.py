"""Matches between two agents over a set of decks, one process per job.

The engine holds the GIL while it works, so threads give no speed-up; processes do.
Every deck pairing is played with both deck assignments and both seatings, in a fixed
cycle, so a run of 4k games per pairing is balanced exactly.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from typing import Any, Iterator, Sequence

import phase

from magerl.game.agents import Agent, make_agent
from magerl.game.cards import CardDatabase
from magerl.game.decks import Deck
from magerl.game.session import EngineError, GameResult, GameSession, Limits


@dataclass(frozen=True)
class GameSpec:
    """One scheduled game: which agent plays which deck from which seat."""

    index: int
    seed: int
    decks: tuple[int, int]  # deck index used by agent 0 and agent 1
    agent_seats: tuple[int, int]  # seat of agent 0 and agent 1


@dataclass
class GameRecord:
    spec: GameSpec
    result: GameResult
    winner_agent: int | None  # 0 or 1, None for draws and aborted games


def play_game(session: GameSession, agents: list[Agent]) -> GameResult:
    """Drive `session` to its end with `agents[seat]` answering each decision, timing each agent."""
    act_seconds = [0.0, 0.0]
    try:
        while (decision := session.next_decision()) is not None:
            start = time.perf_counter()
            index = agents[decision.seat].act(decision)
            act_seconds[decision.seat] += time.perf_counter() - start
            session.choose(decision, index)
    except EngineError:
        pass  # the session recorded it as an aborted game
    result = session.result()
    result.act_seconds = act_seconds
    return result


def schedule(n_decks: int, games: int, seed: int, first_decks: Sequence[int] | None = None) -> Iterator[GameSpec]:
    """Deck pairings x deck assignment x seating, cycled until `games` are scheduled.

    With `first_decks`, agent 0 plays only those decks, each against every other deck
    from both seats: the same games a full schedule gives agent 0 with those decks, for
    measuring one deck without playing the rest.
    """
    if first_decks is None:
        pairs = list(itertools.combinations(range(n_decks), 2)) or [(0, 0)]
        assigned = [pair if swap == 0 else (pair[1], pair[0]) for pair in pairs for swap in (0, 1)]
    else:
        assigned = [(a, b) for a in first_decks for b in range(n_decks) if b != a or n_decks == 1]
    cycle = [(decks, (0, 1) if seat == 0 else (1, 0)) for decks in assigned for seat in (0, 1)]
    for i in range(games):
        decks, seats = cycle[i % len(cycle)]
        yield GameSpec(index=i, seed=seed + i, decks=decks, agent_seats=seats)


# -- process pool plumbing: each process builds its engine once -------------------
_worker: dict[str, Any] = {}


def _init_worker(card_data: str, deck_cards: list[list[str]], deck_names: list[str], agent_specs: list[str],
                 limits: Limits) -> None:
    if any(spec.startswith(("policy:", "greedy:")) for spec in agent_specs):
        from magerl.model.agent import one_core

        one_core()  # one core per game process: what a worker's runner gets
    _worker.update(
        engine=phase.Engine.from_path(card_data),
        decks=deck_cards,
        deck_names=deck_names,
        agents=agent_specs,
        limits=limits,
    )


def _run_spec(spec: GameSpec) -> GameRecord:
    engine, decks, agent_specs = _worker["engine"], _worker["decks"], _worker["agents"]
    by_seat: list[Any] = [None, None]
    seat_decks: list[list[str]] = [[], []]
    for agent_index in (0, 1):
        seat = spec.agent_seats[agent_index]
        by_seat[seat] = make_agent(agent_specs[agent_index], seed=spec.seed * 2 + agent_index,
                                   deck=_worker["deck_names"][spec.decks[agent_index]])
        seat_decks[seat] = decks[spec.decks[agent_index]]
    try:
        session = GameSession(
            engine, (seat_decks[0], seat_decks[1]), seed=spec.seed, first_player=0, limits=_worker["limits"]
        )
    except EngineError as exc:
        result = GameResult(None, 0, 0, [0, 0], 0.0, aborted="engine_error", error=str(exc))
    else:
        result = play_game(session, by_seat)
    winner_agent = None if result.winner is None else spec.agent_seats.index(result.winner)
    return GameRecord(spec, result, winner_agent)


def run_match(
    cards: CardDatabase,
    decks: list[Deck],
    agent_specs: list[str],
    *,
    games: int,
    seed: int = 1,
    jobs: int = 1,
    limits: Limits = Limits(),
    progress: bool = True,
    first_decks: Sequence[int] | None = None,
) -> list[GameRecord]:
    """Play `games` games and return their records in schedule order (see `schedule`)."""
    for spec in agent_specs:
        make_agent(spec)  # fail fast on a bad spec, before any process starts
    init_args = (str(cards.path), [d.cards() for d in decks], [d.name for d in decks], agent_specs, limits)
    specs = list(schedule(len(decks), games, seed, first_decks))
    records: list[GameRecord] = []
    bar = _progress(games, progress)
    try:
        if jobs <= 1:
            _init_worker(*init_args)
            for spec in specs:
                records.append(_run_spec(spec))
                _tick(bar, records)
        else:
            ctx = get_context("spawn")
            pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=init_args)
            try:
                for future in as_completed([pool.submit(_run_spec, s) for s in specs]):
                    records.append(future.result())
                    _tick(bar, records)
            finally:
                # On a stop (an interrupt sent to this process alone, as `kill -INT` or a supervisor
                # does) or a failed game, drop the games not started: a plain `with` block would
                # play every queued game before it let the stop through.
                pool.shutdown(cancel_futures=True)
    finally:
        if bar is not None:
            bar.close()
    return sorted(records, key=lambda r: r.spec.index)


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="game", dynamic_ncols=True, disable=None)


def _tick(bar: Any, records: list[GameRecord]) -> None:
    if bar is None:
        return
    decided = [r for r in records if r.winner_agent is not None]
    rate = sum(r.winner_agent == 0 for r in decided) / len(decided) if decided else float("nan")
    if bar.disable:  # not a terminal (a log file): a line every tenth of the games
        done, total = len(records), bar.total
        if done == total or done % max(1, total // 10) == 0:
            print(f"{done}/{total} games, agent 1 wins {rate:.0%}", file=sys.stderr, flush=True)
        return
    bar.set_postfix_str(f"agent 1 wins {rate:.0%}", refresh=False)
    bar.update(1)


# -- statistics -------------------------------------------------------------------
def wilson(wins: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a win rate (sound at 0% and 100%, unlike Wald's)."""
    if n == 0:
        return (0.0, 1.0)
    p = wins / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class Tally:
    wins: int = 0
    losses: int = 0
    draws: int = 0
    aborted: int = 0

    @property
    def decided(self) -> int:
        """Games that finished (draws included); aborted games are not counted in rates."""
        return self.wins + self.losses + self.draws

    def summary(self) -> dict[str, Any]:
        low, high = wilson(self.wins, self.decided)
        rate = self.wins / self.decided if self.decided else None
        return {**asdict(self), "games": self.decided + self.aborted, "win_rate": rate, "ci95": [low, high]}


@dataclass
class MatchReport:
    agents: list[str]
    decks: list[str]
    games: int
    seed: int
    jobs: int
    seconds: float
    overall: list[dict[str, Any]] = field(default_factory=list)
    per_deck: list[dict[str, dict[str, Any]]] = field(default_factory=list)
    mean_turns: float | None = None
    aborted: dict[str, int] = field(default_factory=dict)
    engine_errors: int = 0
    decisions: int = 0
    decisions_per_second: float = 0.0  # per process: agent decisions over in-game time
    decision_ms: list[float | None] = field(default_factory=lambda: [None, None])  # each agent's mean time to choose


def summarize(
    records: list[GameRecord], agents: list[str], decks: list[Deck], *, seed: int, jobs: int, seconds: float
) -> MatchReport:
    overall = [Tally(), Tally()]
    per_deck = [{d.name: Tally() for d in decks}, {d.name: Tally() for d in decks}]
    aborted: dict[str, int] = {}
    finished_turns: list[int] = []
    decisions = 0
    engine_seconds = 0.0
    agent_decisions, agent_seconds = [0, 0], [0.0, 0.0]
    for rec in records:
        result = rec.result
        decisions += sum(result.decisions)
        engine_seconds += result.seconds
        for agent, seat in enumerate(rec.spec.agent_seats):
            agent_decisions[agent] += result.decisions[seat]
            agent_seconds[agent] += result.act_seconds[seat]
        for agent in (0, 1):
            tallies = (overall[agent], per_deck[agent][decks[rec.spec.decks[agent]].name])
            for tally in tallies:
                if result.aborted:
                    tally.aborted += 1
                elif rec.winner_agent is None:
                    tally.draws += 1
                elif rec.winner_agent == agent:
                    tally.wins += 1
                else:
                    tally.losses += 1
        if result.aborted:
            aborted[result.aborted] = aborted.get(result.aborted, 0) + 1
        else:
            finished_turns.append(result.turns)
    return MatchReport(
        agents=agents,
        decks=[d.name for d in decks],
        games=len(records),
        seed=seed,
        jobs=jobs,
        seconds=seconds,
        overall=[t.summary() for t in overall],
        per_deck=[{name: t.summary() for name, t in pd.items() if t.decided + t.aborted} for pd in per_deck],
        mean_turns=sum(finished_turns) / len(finished_turns) if finished_turns else None,
        aborted=aborted,
        engine_errors=aborted.get("engine_error", 0),
        decisions=decisions,
        decisions_per_second=decisions / engine_seconds if engine_seconds else 0.0,
        decision_ms=[1000 * t / n if n else None for t, n in zip(agent_seconds, agent_decisions)],
    )


