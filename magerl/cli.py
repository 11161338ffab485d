"""The `magerl` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from typing import Any, Sequence

from magerl.game.cards import CARD_DB_ENV, CardDatabase, CardDataError
from magerl.game.decks import DeckError, load_deck, standard_decks
from magerl.game.play import MatchReport, run_match, summarize
from magerl.game.session import Limits

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad user input: printed as one line per problem, exit code 2."""


def _add_card_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--card-db",
        metavar="PATH",
        default=None,
        help=f"MTGJSON AtomicCards.json(.gz) to build the card database from "
        f"(default: ${CARD_DB_ENV}, else the shipped Pauper starter pool)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="magerl", description="Self-play reinforcement learning for Magic: The Gathering.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    play = sub.add_parser(
        "play",
        help="play games between two agents and report win rates",
        description="Play games between two agents over every pairing of the given decks, "
        "with both deck assignments and both seatings, and report each agent's win rate "
        "with a 95%% Wilson interval. Aborted games (length caps, engine errors) are "
        "reported and left out of win rates.",
    )
    play.add_argument(
        "--deck",
        action="append",
        metavar="DECK",
        help="decklist file (.txt or MTGO .dek) or a standard deck name; repeat for more "
        f"(default: all standard decks: {', '.join(sorted(standard_decks()))})",
    )
    play.add_argument(
        "--agent",
        action="append",
        metavar="AGENT",
        help="random | engine:veryeasy|easy|medium|hard|veryhard[:EPSILON]; give exactly two",
    )
    play.add_argument("--games", type=int, default=100, help="number of games (default 100)")
    play.add_argument("--seed", type=int, default=1, help="seed of the first game; game i uses seed+i (default 1)")
    play.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes to play in (default: CPU count)")
    play.add_argument("--max-turns", type=int, default=Limits.max_turns, help="abort a game after this many turns")
    play.add_argument("--max-prompts", type=int, default=Limits.max_prompts, help="abort a game after this many engine prompts")
    play.add_argument("--json", action="store_true", help="print the report as one JSON document")
    _add_card_db(play)
    play.set_defaults(func=cmd_play)

    cards = sub.add_parser("cards", help="build the card database and report cards the engine parses only partly")
    _add_card_db(cards)
    cards.set_defaults(func=cmd_cards)
    return parser


def _load_cards(path: str | None) -> CardDatabase:
    try:
        return CardDatabase.load(path)
    except CardDataError as exc:
        raise UsageError(str(exc)) from exc


def cmd_play(args: argparse.Namespace) -> int:
    agents = args.agent or []
    if len(agents) != 2:
        raise UsageError(f"--agent must be given exactly twice (got {len(agents)})")
    if args.games < 1 or args.jobs < 1:
        raise UsageError("--games and --jobs must be at least 1")
    cards = _load_cards(args.card_db)
    deck_specs = args.deck or sorted(standard_decks())
    problems: list[str] = []
    decks = []
    for spec in deck_specs:
        try:
            decks.append(load_deck(spec, cards))
        except DeckError as exc:
            problems += exc.problems
    if problems:
        raise UsageError("\n".join(problems))
    limits = Limits(max_turns=args.max_turns, max_prompts=args.max_prompts)
    start = time.perf_counter()
    try:
        records = run_match(
            cards, decks, agents, games=args.games, seed=args.seed, jobs=min(args.jobs, args.games), limits=limits,
            progress=not args.json,
        )
    except ValueError as exc:  # a bad agent spec
        raise UsageError(str(exc)) from exc
    report = summarize(records, agents, decks, seed=args.seed, jobs=args.jobs, seconds=time.perf_counter() - start)
    if args.json:
        json.dump(asdict(report), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_report(report))
    return 0


def _rate(summary: dict[str, Any]) -> str:
    if summary["win_rate"] is None:
        return "     -   (no finished game)"
    low, high = summary["ci95"]
    return f"{summary['win_rate']:6.1%}  [{low:5.1%}, {high:5.1%}]"


def format_report(report: MatchReport) -> str:
    labels = [f"{i + 1}: {name}" for i, name in enumerate(report.agents)]
    width = max(len(s) for s in labels + ["agent"]) + 2
    lines = [
        f"{report.games} games, decks {', '.join(report.decks)}, seed {report.seed}, "
        f"{report.jobs} jobs, {report.seconds:.1f} s",
        "",
        f"{'agent':<{width}}{'wins':>6}{'losses':>8}{'draws':>7}{'aborted':>9}   win rate  95% CI",
    ]
    for label, s in zip(labels, report.overall):
        lines.append(f"{label:<{width}}{s['wins']:>6}{s['losses']:>8}{s['draws']:>7}{s['aborted']:>9}   {_rate(s)}")
    lines += ["", "per deck:"]
    for label, per_deck in zip(labels, report.per_deck):
        for deck, s in per_deck.items():
            lines.append(f"  {label:<{width}}{deck:<16}{s['games']:>5} games   {_rate(s)}")
    mean_turns = f"{report.mean_turns:.1f}" if report.mean_turns is not None else "-"
    aborted = ", ".join(f"{k} {v}" for k, v in sorted(report.aborted.items())) or "none"
    lines += [
        "",
        f"mean turns (finished games): {mean_turns}",
        f"aborted games: {sum(report.aborted.values())} ({aborted})",
        f"decisions: {report.decisions}, {report.decisions_per_second:.0f}/s per process",
    ]
    return "\n".join(lines)


def cmd_cards(args: argparse.Namespace) -> int:
    from magerl.game.cards import unimplemented_parts

    cards = _load_cards(args.card_db)
    partial = {face["name"]: unimplemented_parts(face) for face in cards.faces.values()}
    partial = {name: parts for name, parts in partial.items() if parts}
    print(f"{len(cards.faces)} cards from {cards.source} (built: {cards.path})")
    print(f"{len(partial)} parsed only partly by the engine:")
    for name, parts in sorted(partial.items()):
        print(f"  {name}: {'; '.join(parts)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as exc:
        for line in str(exc).splitlines():
            print(f"magerl: error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("magerl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
