"""The ladder: a checkpoint against every fixed opponent, with games enough to mean something.

Each opponent gets the same schedule `magerl play` uses: every pairing of the standard
decks, both deck assignments and both seats, in a fixed cycle (24 games with four decks),
on seeds disjoint from any the training recipes use. Win rates count finished games
only, with 95% Wilson intervals; aborted games are reported beside them, and each
game's outcome is kept in schedule order. Each agent's time to choose is measured in the
same games, so the policy's decision latency sits beside the engine AI's. Reports are
JSON; `plot` draws win rate against the training compute recorded in each checkpoint,
and `compare` says whether one checkpoint beats another by more than the noise of the
games played: game by game where both played the same schedule.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

from magerl.game.cards import CardDatabase
from magerl.game.decks import Deck
from magerl.game.play import run_match, schedule, summarize, wilson
from magerl.game.session import Limits

OUTCOME = {0: "W", 1: "L", None: "D"}  # by winning agent; "A": aborted
LADDER = ("random", "engine:veryeasy", "engine:easy", "engine:medium", "engine:hard")
TARGETS = {"random": 0.95, "engine:easy": 0.70, "engine:medium": 0.50, "engine:hard": 0.55}
DEFAULT_SEED = 20_000  # training recipes play seeds below this


def training_of(checkpoint_path: Path) -> dict[str, Any]:
    """What a checkpoint's training cost: episodes and seconds, from the recipe in its state.json
    (a policy set's: from its set file, all its networks together)."""
    from magerl.learner.checkpoint import SET_FILE  # torch: only where a policy is played

    set_file = checkpoint_path / SET_FILE
    state = json.loads((set_file if set_file.exists() else checkpoint_path / "state.json").read_text())
    recipe = state.get("recipe") or {}
    compute = recipe.get("compute") or {}
    return {
        "episodes": compute.get("episodes"),
        "seconds": compute.get("seconds"),
        "updates": state.get("updates"),
        "method": recipe.get("method", "self-play"),
    }


def run_ladder(cards: CardDatabase, decks: list[Deck], checkpoint: Path, *, opponents: tuple[str, ...] = LADDER,
               games: int = 216, seed: int = DEFAULT_SEED, jobs: int = 1, greedy: bool = False,
               progress: bool = True, on_opponent: Callable[[dict[str, Any]], None] | None = None,
               resume: dict[str, Any] | None = None, policy_decks: list[str] | None = None,
               limits: Limits = Limits()) -> dict[str, Any]:
    """Play `games` games against each opponent; the report as a JSON-ready dict.

    `policy_decks` (names among `decks`) limits the policy to those decks, each against
    every other deck: one deck's row of the ladder, measured with all the games.

    `on_opponent` gets the report so far after each opponent: a long ladder that is
    stopped keeps what it has measured. `resume` is such an earlier report of the same
    checkpoint and settings: its opponents are kept, not replayed, those not in
    `opponents` too, ahead of them (a ValueError names the setting that differs).

    `limits` caps each game; a game past a cap is aborted, and each row counts its
    aborted games by cap (`aborted_by`): a policy that stalls shows there, not only as
    fewer games decided.
    """
    policy = f"{'greedy' if greedy else 'policy'}:{checkpoint}"
    entries: dict[str, Any] = {}
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "training": training_of(checkpoint),
        "decision_rule": "greedy" if greedy else "sample",
        "games_per_opponent": games,
        "seed": seed,
        "decks": [d.name for d in decks],
        "policy_decks": policy_decks,
        "jobs": jobs,
        "opponents": entries,
    }
    if resume is not None:
        for key in ("training", "decision_rule", "games_per_opponent", "seed", "decks", "policy_decks"):
            if resume.get(key) != report[key]:
                raise ValueError(f"cannot resume: the report's {key} is {resume.get(key)!r}, "
                                 f"this ladder's is {report[key]!r}")
    first = _first_decks(report)
    kept = (resume or {}).get("opponents", {})
    order = [o for o in kept if o not in opponents] + list(opponents)  # a resume adds rows, never drops one
    entries.update((o, kept[o]) for o in order if o in kept)  # in every save: a stop loses none of them
    for opponent in opponents:
        if opponent in kept:
            continue
        start = time.perf_counter()
        records = run_match(cards, decks, [policy, opponent], games=games, seed=seed, jobs=jobs,
                            limits=limits, progress=progress, first_decks=first)
        match = summarize(records, [policy, opponent], decks, seed=seed, jobs=jobs,
                          seconds=time.perf_counter() - start)
        overall = match.overall[0]
        entries[opponent] = {
            "win_rate": overall["win_rate"], "ci95": overall["ci95"], "wins": overall["wins"],
            "losses": overall["losses"], "draws": overall["draws"], "aborted": overall["aborted"],
            "aborted_by": match.aborted,
            "games": overall["games"], "per_deck": match.per_deck[0], "mean_turns": match.mean_turns,
            "decision_ms": {"policy": match.decision_ms[0], "opponent": match.decision_ms[1]},
            "seconds": round(match.seconds, 1), "target": TARGETS.get(opponent),
            "outcomes": "".join("A" if r.result.aborted else OUTCOME[r.winner_agent] for r in records),
        }
        report["opponents"] = entries = {o: entries[o] for o in order if o in entries}
        report["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if on_opponent:
            on_opponent(report)
    return report


def format_ladder(report: dict[str, Any]) -> str:
    training = report["training"]
    amount = (f"{training['episodes']} episodes" if training["episodes"] is not None
              else f"{training.get('updates')} updates, episodes not recorded")
    compute = ("training compute not recorded" if training["seconds"] is None
               else f"{training['seconds'] / 3600:.2f} h of training compute")
    only = f"; the policy plays only {', '.join(report['policy_decks'])}" if report.get("policy_decks") else ""
    lines = [f"{report['checkpoint']} ({report['decision_rule']}): {training['method']}, {amount}, {compute}{only}",
             f"{'opponent':<18}{'games':>6}{'aborted':>8}   win rate  95% CI         target   ms/decision (policy / opponent)"]
    for name, e in report["opponents"].items():
        rate = "   -" if e["win_rate"] is None else f"{e['win_rate']:6.1%}  [{e['ci95'][0]:.1%}, {e['ci95'][1]:.1%}]"
        target = f"≥ {e['target']:.0%}" if e["target"] else "-"
        ms = e["decision_ms"]
        lines.append(f"{name:<18}{e['games']:>6}{e['aborted']:>8}   {rate:<24} {target:>6}   "
                     f"{ms['policy'] or 0:.2f} / {ms['opponent'] or 0:.2f}")
    for name, e in report["opponents"].items():
        if e.get("aborted_by"):  # reports before the field have none
            causes = ", ".join(f"{cause} {n}" for cause, n in sorted(e["aborted_by"].items()))
            lines.append(f"aborted against {name}: {causes}")
    return "\n".join(lines)


def difference(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float, float]:
    """A's win rate minus B's, with a 95% interval (Newcombe's hybrid score interval).

    Built from each side's Wilson interval, it stays sound near 0% and 100% where the
    usual ± 1.96 standard errors does not. It treats the two ladders' games as
    independent: too wide whenever the two checkpoints tend to win and lose the same
    games, as they do on the same seeds, where `paired_difference` counts that.
    """
    (pa, (la, ua)), (pb, (lb, ub)) = (a["win_rate"], a["ci95"]), (b["win_rate"], b["ci95"])
    d = pa - pb
    return d, d - math.hypot(pa - la, ub - pb), d + math.hypot(ua - pa, pb - lb)


def paired_counts(a: str, b: str) -> tuple[int, int, int, int]:
    """Of the games of one schedule that both A and B finished: how many both won, only A won,
    only B won, and neither won. Only the two middle counts can move the difference."""
    if len(a) != len(b):
        raise ValueError(f"outcomes of {len(a)} and {len(b)} games: not the same schedule")
    both = [(x == "W", y == "W") for x, y in zip(a, b) if "A" not in (x, y)]
    e = sum(x and y for x, y in both)
    f = sum(x and not y for x, y in both)
    g = sum(y and not x for x, y in both)
    return e, f, g, len(both) - e - f - g


def paired_difference(a: str, b: str) -> tuple[float, float, float]:
    """A's win rate minus B's over the games both finished, from two `outcomes` strings of one
    schedule: Newcombe's (1998) paired method 10, the Wilson intervals of both rates joined
    with the (continuity-corrected) correlation of the two checkpoints' results game by game.

    Games that share a seed share the shuffles, the first player and the deck pairing, so
    results go together; counting that is what makes this interval narrower than the
    unpaired one when they do."""
    return _paired_interval(*paired_counts(a, b))


def _paired_interval(e: int, f: int, g: int, h: int) -> tuple[float, float, float]:
    """`paired_difference` from the counts of `paired_counts`, for callers that print them too."""
    n = e + f + g + h
    if n == 0:
        return 0.0, -1.0, 1.0
    pa, pb = (e + f) / n, (e + g) / n
    (la, ua), (lb, ub) = wilson(e + f, n), wilson(e + g, n)
    margins = (e + f) * (g + h) * (e + g) * (f + h)
    cross = e * h - f * g
    corrected = cross - n / 2 if cross > n / 2 else min(cross, 0)
    phi = corrected / math.sqrt(margins) if margins else 0.0
    d = pa - pb
    low = d - math.sqrt(max(0.0, (pa - la) ** 2 - 2 * phi * (pa - la) * (ub - pb) + (ub - pb) ** 2))
    high = d + math.sqrt(max(0.0, (pb - lb) ** 2 - 2 * phi * (pb - lb) * (ua - pa) + (ua - pa) ** 2))
    return d, low, high


def _first_decks(report: dict[str, Any]) -> list[int] | None:
    """The indices of the decks a report's policy was limited to (`--policy-deck`); None: all."""
    names = report.get("policy_decks")
    return None if names is None else [report["decks"].index(name) for name in names]


def deck_outcomes(report: dict[str, Any], outcomes: str, deck: str | None = None,
                  opponent_deck: str | None = None) -> str:
    """The outcomes of the games in which the policy played `deck` and its opponent played
    `opponent_deck` (None: any), from one opponent's `outcomes` of `report` (in schedule
    order, so the schedule says which games those are)."""
    if deck is None and opponent_deck is None:
        return outcomes
    mine, theirs = (None if d is None else report["decks"].index(d) for d in (deck, opponent_deck))
    games = schedule(len(report["decks"]), len(outcomes), report["seed"], _first_decks(report))
    return "".join(outcomes[game.index] for game in games
                   if mine in (None, game.decks[0]) and theirs in (None, game.decks[1]))


Sides = tuple[str, str, tuple[int, int], tuple[int, int]]  # A's and B's outcomes, (won, finished)


def format_comparison(pairs: list[tuple[dict[str, Any], dict[str, Any]]], deck: str | None = None,
                      opponent_deck: str | None = None) -> str:
    """Each opponent all the (A, B) report pairs played: both win rates and their difference
    with its interval, game by game where a pair played the same schedule and kept each game's
    outcome. Several pairs (the same two checkpoints on other seeds) are shown one by one and
    pooled: their games joined, paired if every pair is. With `deck`, only the games the policy
    played with that deck (one deck network's change inside two ladders of a policy set); with
    `opponent_deck`, only those against that deck (one matchup). Raises ValueError for a deck
    a ladder did not play, an `opponent_deck` a report kept no outcomes for, or pairs whose
    seeds overlap (pooled, those games would count twice)."""
    reports = [r for pair in pairs for r in pair]
    for flag, name in (("--deck", deck), ("--opponent-deck", opponent_deck)):
        missing = next((r for r in reports if name and name not in r["decks"]), None)
        if missing:
            raise ValueError(f"{flag} {name} is not a deck of every ladder ({missing['checkpoint']} played "
                             f"{', '.join(missing['decks'])})")
    lines: list[str] = []
    for side, half in (("A", [a for a, _ in pairs]), ("B", [b for _, b in pairs])):
        names = dict.fromkeys(f"{r['checkpoint']} ({r['decision_rule']})" for r in half)
        lines.append(f"{side}: {', '.join(names)}")
    if deck or opponent_deck:
        lines.append("only the games" + (f" the policy played with {deck}" if deck else "")
                     + (f" against {opponent_deck}" if opponent_deck else ""))
    same = [(a["seed"], a["decks"], a.get("policy_decks")) == (b["seed"], b["decks"], b.get("policy_decks"))
            for a, b in pairs]
    if not all(same):
        lines.append("note: " + ("the ladders" if len(pairs) == 1 else "a pair's ladders")
                     + " played different seeds or decks")
    shared = [o for o in pairs[0][0]["opponents"] if all(o in r["opponents"] for r in reports)]
    pooled = len(pairs) > 1
    if pooled:
        _refuse_overlap(reports, shared)
        lines.append(f"{len(pairs)} pairs of ladders, each by its seeds (A's), then pooled")
    seeds = f"{'seeds':<9}" if pooled else ""
    any_paired = False
    lines.append(f"{'opponent':<18}{seeds}{'A (games)':>14} {'B (games)':>14}    A − B   95% CI")
    for name in shared:
        rows = [_sides(a, b, name, deck, opponent_deck, matched) for (a, b), matched in zip(pairs, same)]
        if any(row is None for row in rows):
            continue
        labelled = [("", rows[0])]
        if pooled:
            labelled = [(f"{a['seed']:<9}", row) for (a, _), row in zip(pairs, rows)] + [("pooled   ", _pool(rows))]
        for label, (oa, ob, (wa, na), (wb, nb)) in labelled:
            how = "unpaired"
            if oa:
                any_paired = True
                counts = paired_counts(oa, ob)
                d, low, high = _paired_interval(*counts)
                _, alone_a, alone_b, _ = counts
                how = f"paired (A alone {alone_a}, B alone {alone_b})"
            else:
                d, low, high = difference({"win_rate": wa / na, "ci95": wilson(wa, na)},
                                          {"win_rate": wb / nb, "ci95": wilson(wb, nb)})
            verdict = "A ahead" if low > 0 else "B ahead" if high < 0 else "not separated"
            lines.append(f"{name:<18}{label}{wa / na:>8.1%} {f'({na})':<6}{wb / nb:>8.1%} {f'({nb})':<6}"
                         f"   {d:+6.1%}  [{low:+.1%}, {high:+.1%}]  {verdict}, {how}")
    if not shared:
        lines.append("(no opponent in every report)")
    elif any_paired:
        lines.append("A alone, B alone: of the games both finished, those only one of them won")
    return "\n".join(lines)


def _sides(a: dict[str, Any], b: dict[str, Any], opponent: str, deck: str | None, opponent_deck: str | None,
           same_schedule: bool) -> Sides | None:
    """One pair's games against `opponent` (of the policy's `deck`, against `opponent_deck`):
    A's and B's outcomes, empty where they cannot be paired game by game, and each side's
    games won and games finished. None where either side finished none."""
    outcomes, counts = [], []
    for report in (a, b):
        entry = report["opponents"][opponent]
        if "outcomes" in entry:
            games = deck_outcomes(report, entry["outcomes"], deck, opponent_deck)
            counts.append((games.count("W"), len(games) - games.count("A")))
            outcomes.append(games)
            continue
        if opponent_deck:
            raise ValueError(f"{report['checkpoint']}: the report keeps no game outcomes, which --opponent-deck needs")
        entry = entry.get("per_deck", {}).get(deck) if deck else entry
        if entry is None:
            return None
        counts.append((entry["wins"], entry["games"] - entry.get("aborted", 0)))
        outcomes.append("")
    if not (counts[0][1] and counts[1][1]):
        return None
    oa, ob = outcomes
    if not same_schedule or len(oa) != len(ob) or not oa:
        oa = ob = ""
    return oa, ob, counts[0], counts[1]


def _pool(rows: list[Sides]) -> Sides:
    """Several pairs' games as one: outcomes joined (paired only if every pair is), counts summed."""
    paired = all(oa for oa, _, _, _ in rows)
    count_a, count_b = ((sum(r[k][0] for r in rows), sum(r[k][1] for r in rows)) for k in (2, 3))
    if not paired:
        return "", "", count_a, count_b
    return "".join(r[0] for r in rows), "".join(r[1] for r in rows), count_a, count_b


def _refuse_overlap(reports: list[dict[str, Any]], opponents: list[str]) -> None:
    """Pooled ladders must not share a game: a ValueError names two of one side that do."""
    for side in (reports[0::2], reports[1::2]):
        spans = [(r["seed"], r["seed"] + max((r["opponents"][o]["games"] for o in opponents), default=0), r)
                 for r in side]
        for i, (start, stop, r) in enumerate(spans):
            for start2, stop2, r2 in spans[i + 1:]:
                if start < stop2 and start2 < stop and r["decks"] == r2["decks"]:
                    raise ValueError(f"{r['checkpoint']} (seed {start}) and {r2['checkpoint']} (seed {start2}) "
                                     f"played some of the same games: pooled, they would count twice")


def plot(reports: list[dict[str, Any]], out: Path) -> None:
    """Win rate (with its 95% interval) against training episodes and hours, one line per opponent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = sorted(reports, key=lambda r: r["training"]["episodes"] or 0)
    opponents = list(dict.fromkeys(name for r in points for name in r["opponents"]))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, key, label, scale in ((axes[0], "episodes", "training episodes", 1.0),
                                  (axes[1], "seconds", "training compute (hours, this machine)", 3600.0)):
        for i, name in enumerate(opponents):
            rows = [(r["training"][key] / scale, r["opponents"][name]) for r in points
                    if name in r["opponents"] and r["opponents"][name]["win_rate"] is not None
                    and r["training"][key] is not None]
            if not rows:
                continue
            xs = [x for x, _ in rows]
            ys = [e["win_rate"] for _, e in rows]
            low = [e["win_rate"] - e["ci95"][0] for _, e in rows]
            high = [e["ci95"][1] - e["win_rate"] for _, e in rows]
            color = f"C{i}"
            ax.errorbar(xs, ys, yerr=[low, high], marker="o", capsize=3, color=color,
                        label=f"{name} ({rows[-1][1]['games']} games)")
            if TARGETS.get(name):
                ax.axhline(TARGETS[name], color=color, linestyle=":", linewidth=1)
        ax.set_xlabel(label)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("win rate (95% Wilson interval); dotted: target")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=max(len(labels), 1))  # below: never over a point
    fig.suptitle("magerl ladder: win rate against fixed opponents")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
