"""The `magerl` command."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator, Sequence

from magerl.game.agents import make_agent
from magerl.game.cards import CARD_DB_ENV, CardDatabase, CardDataError
from magerl.game.decks import Deck, DeckError, load_deck, standard_decks
from magerl.game.play import MatchReport, run_match, summarize
from magerl.game.session import CAPPED_REWARD, Limits

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
        "with a 95% Wilson interval. Aborted games (length caps, engine errors) are "
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
        help="random | engine:veryeasy|easy|medium|hard|veryhard[:EPSILON] | policy:PATH (sampling) | "
        "greedy:PATH (likeliest move); PATH 'default' is the shipped policy; give exactly two",
    )
    play.add_argument("--games", type=int, default=100, help="number of games (default 100)")
    play.add_argument("--seed", type=int, default=1, help="seed of the first game; game i uses seed+i (default 1)")
    play.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes to play in (default: CPU count)")
    play.add_argument("--max-turns", type=int, default=Limits.max_turns, help="abort a game after this many turns")
    play.add_argument("--max-prompts", type=int, default=Limits.max_prompts, help="abort a game after this many engine prompts")
    play.add_argument("--json", action="store_true", help="print the report as one JSON document")
    _add_card_db(play)
    play.set_defaults(func=cmd_play)

    ev = sub.add_parser("eval", help="win rate of a checkpoint against one opponent",
                        description="Play a checkpoint's policy against an opponent over the standard deck pairings "
                        "(both assignments, both seatings) and print its win rate with a 95% interval.")
    ev.add_argument("--checkpoint", required=True, metavar="PATH", help="checkpoint folder, or a run folder (its newest)")
    ev.add_argument("--opponent", required=True, metavar="AGENT", help="random | engine:DIFFICULTY | policy:PATH")
    ev.add_argument("--games", type=int, default=200)
    ev.add_argument("--seed", type=int, default=10_000)
    ev.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ev.add_argument("--deck", action="append", metavar="DECK", help="decks (default: the standard decks)")
    ev.add_argument("--json", action="store_true")
    _add_card_db(ev)
    ev.set_defaults(func=cmd_eval)

    cards = sub.add_parser("cards", help="build the card database and report cards the engine parses only partly")
    _add_card_db(cards)
    cards.set_defaults(func=cmd_cards)

    pset = sub.add_parser(
        "policy-set", help="one network per deck: build a policy set from checkpoints",
        description="Copy checkpoints into a policy set: the policy plays each listed deck with that deck's "
        "network and every other deck with --others. Use it anywhere a checkpoint goes (policy:DIR, "
        "magerl ladder run --checkpoint DIR).")
    pset.add_argument("--out", required=True, metavar="DIR", help="the set's folder (must not exist)")
    pset.add_argument("--others", required=True, metavar="PATH", help="checkpoint for the decks not listed ('default': the shipped one)")
    pset.add_argument("--deck", action="append", required=True, metavar="DECK=PATH",
                      help="a deck (standard name or decklist file) and its checkpoint or run folder; repeatable")
    pset.set_defaults(func=cmd_policy_set)

    _add_services(sub)
    _add_imitate(sub)
    _add_ladder(sub)
    return parser


def _add_ladder(sub: Any) -> None:
    from magerl.evaluator.ladder import DEFAULT_SEED, LADDER

    ladder = sub.add_parser("ladder", help="a checkpoint against every fixed opponent; JSON report and plot")
    steps = ladder.add_subparsers(dest="step", required=True, metavar="STEP")
    run = steps.add_parser("run", help="play the ladder and write its JSON report")
    run.add_argument("--checkpoint", required=True, metavar="PATH", help="checkpoint folder, or a run folder (its newest)")
    run.add_argument("--opponent", action="append", metavar="AGENT", help=f"repeatable (default: {', '.join(LADDER)})")
    run.add_argument("--games", type=int, default=216,
                     help="games per opponent (default 216: nine full cycles of deck pairings and seats)")
    run.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed of the first game (default {DEFAULT_SEED})")
    run.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    run.add_argument("--deck", action="append", metavar="DECK", help="decks (default: the standard decks)")
    run.add_argument("--policy-deck", action="append", metavar="DECK",
                     help="the policy plays only this deck (repeatable), against every other deck")
    run.add_argument("--greedy", action="store_true", help="the policy takes its likeliest move (default: it samples)")
    run.add_argument("--out", metavar="FILE", help="write the report here as JSON")
    run.add_argument("--resume", action="store_true",
                     help="keep every opponent already in --out (same checkpoint and settings); play the others")
    _add_card_db(run)
    run.set_defaults(func=cmd_ladder_run)
    plot = steps.add_parser("plot", help="PNG of win rate against training compute from ladder reports")
    plot.add_argument("reports", nargs="+", metavar="REPORT", help="ladder JSON reports (one per checkpoint)")
    plot.add_argument("--out", required=True, metavar="PNG")
    plot.set_defaults(func=cmd_ladder_plot)
    compare = steps.add_parser("compare", help="two checkpoints' win rates and their difference, with 95%% intervals",
                               description="For each opponent both ladder reports played: A's and B's win rates "
                               "and A − B with its 95% interval; 'A ahead' or 'B ahead' only where the interval "
                               "excludes 0. Ladders of the same seeds and decks are compared game by game "
                               "('paired'), which counts that both checkpoints tend to win the same games. "
                               "More pairs of reports (the same two checkpoints on other seeds) are shown "
                               "pair by pair and pooled.")
    compare.add_argument("reports", nargs="+", metavar="REPORT",
                         help="ladder JSON reports in pairs: A, then B; A B A B ... to pool several seed sets")
    compare.add_argument("--deck", metavar="DECK",
                         help="only the games the policy played with this deck (a policy set's deck network)")
    compare.add_argument("--opponent-deck", metavar="DECK",
                         help="only the games against this deck (with --deck: one matchup)")
    compare.set_defaults(func=cmd_ladder_compare)


def _add_imitate(sub: Any) -> None:
    imitate = sub.add_parser("imitate", help="behaviour cloning: record the engine AI's games, fit a policy to them")
    steps = imitate.add_subparsers(dest="step", required=True, metavar="STEP")
    rec = steps.add_parser("record", help="play games with an engine AI teacher and append its decisions to a file")
    rec.add_argument("--out", required=True, metavar="FILE", help="episode file to append to (created if missing)")
    rec.add_argument("--teacher", default="engine:medium", metavar="AGENT", help="engine:DIFFICULTY (default engine:medium)")
    rec.add_argument("--opponents", default="engine:medium=0.5,random=0.25,engine:easy=0.25", metavar="MIX",
                     help="AGENT=WEIGHT,... ; the teacher's own spec records both seats "
                     "(default engine:medium=0.5,random=0.25,engine:easy=0.25)")
    rec.add_argument("--games", type=int, default=500)
    rec.add_argument("--epsilon", type=float, default=0.05,
                     help="chance the teacher's seat plays the explorer's move instead, for wider states; "
                     "the recorded label stays the teacher's choice (default 0.05)")
    rec.add_argument("--explore", default="random", metavar="AGENT",
                     help="whose move the teacher's seat plays with probability --epsilon (default random); "
                     "a policy (policy:default, policy:PATH) makes this DAgger: the teacher labels the states "
                     "the policy's own play leads to")
    rec.add_argument("--seed", type=int, default=1)
    rec.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    rec.add_argument("--deck", action="append", metavar="DECK", help="decks (default: the standard decks)")
    rec.add_argument("--teacher-deck", action="append", metavar="DECK",
                     help="the teacher plays only this deck (repeatable), against every deck, and only its play "
                     "is recorded: data for one deck's network (default: every deck)")
    _add_card_db(rec)
    rec.set_defaults(func=cmd_imitate_record)
    fit = steps.add_parser("fit", help="train a policy on recorded teacher games and write a checkpoint")
    fit.add_argument("--data", action="append", required=True, metavar="FILE", help="recorded episode file (repeatable)")
    fit.add_argument("--out", required=True, metavar="DIR", help="checkpoint folder to write checkpoints into")
    fit.add_argument("--epochs", type=int, default=6)
    fit.add_argument("--batch", type=int, default=256)
    fit.add_argument("--lr", type=float, default=1e-3)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--max-episodes", type=int, default=None, metavar="N",
                     help="fit on the first N recorded episodes only (for learning curves)")
    fit.add_argument("--init-from", metavar="PATH", default=None,
                     help="continue from this checkpoint ('default': the shipped policy), e.g. on DAgger data "
                     "recorded with --explore policy:PATH; its model size wins, and its compute counts in the recipe")
    _model_args(fit)
    fit.set_defaults(func=cmd_imitate_fit)


def _metrics_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics-port", type=int, default=None, help="default: $METRICS_PORT, else 9090; 0 picks a free port")
    p.add_argument("--metrics-addr", default="0.0.0.0", help="address /metrics listens on (default 0.0.0.0)")


def _learner_addr_args(p: argparse.ArgumentParser) -> None:
    from magerl.transport.sockets import DEFAULT_EPISODES_PORT, DEFAULT_WEIGHTS_PORT

    p.add_argument("--learner", default=os.environ.get("MAGERL_LEARNER", "127.0.0.1"),
                   help="learner host (default: $MAGERL_LEARNER, else 127.0.0.1)")
    p.add_argument("--episodes-port", type=int, default=DEFAULT_EPISODES_PORT)
    p.add_argument("--weights-port", type=int, default=DEFAULT_WEIGHTS_PORT)


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--d-model", type=int, default=64, help="model width (default 64)")
    p.add_argument("--layers", type=int, default=2, help="transformer layers (default 2)")
    p.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")


def _add_services(sub: Any) -> None:
    from magerl.transport.sockets import DEFAULT_EPISODES_PORT, DEFAULT_WEIGHTS_PORT

    learner = sub.add_parser("learner", help="train from workers' episodes, publish weights, checkpoint")
    learner.add_argument("--checkpoint-dir", default=os.environ.get("MAGERL_CHECKPOINT_DIR", "checkpoints"),
                         help="where checkpoints go; the newest valid one is resumed (default: $MAGERL_CHECKPOINT_DIR, else ./checkpoints)")
    learner.add_argument("--bind-host", default="*", help="address the data ports bind (default: all)")
    learner.add_argument("--episodes-port", type=int, default=DEFAULT_EPISODES_PORT)
    learner.add_argument("--weights-port", type=int, default=DEFAULT_WEIGHTS_PORT)
    learner.add_argument("--max-updates", type=int, default=None, help="stop after this many updates (final checkpoint)")
    learner.add_argument("--max-samples-per-batch", type=int, default=None,
                         help="cap on the batch size (default: $MAX_SAMPLES_PER_BATCH, else 512)")
    learner.add_argument("--checkpoint-every", type=int, default=10, help="updates between checkpoints (default 10)")
    learner.add_argument("--keep-checkpoints", type=int, default=3)
    learner.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    learner.add_argument("--threads", type=int, default=None,
                         help="CPU threads for training (default: torch's, one per physical core, in a container the node's); "
                              "fewer where game runners share the cores, or to a container's CPU limit")
    learner.add_argument("--lr", type=float, default=3e-4)
    learner.add_argument("--gae-lambda", type=float, default=None,
                         help="GAE lambda, 0 to 1: 1 credits every decision with its game's result, lower trusts the "
                         "value head for nearer credit (default 0.95)")
    learner.add_argument("--gamma", type=float, default=None,
                         help="discount per decision, above 0 up to 1: below 1 a result counts less the more "
                         "decisions lie before it, and shorter wins more (default 1, none)")
    learner.add_argument("--ppo-epochs", type=int, default=None,
                         help="passes over each batch per update: more moves the policy further per game played "
                         "(default 2)")
    learner.add_argument("--entropy-coef", type=float, default=None,
                         help="weight of the entropy bonus in the loss: higher keeps the policy exploring, 0 lets it "
                         "sharpen freely (default 0.01)")
    learner.add_argument("--shaping", type=float, default=None,
                         help="weight of reward shaping by the engine's evaluation of the position: a decision is "
                         "also credited with the change in that evaluation after it (default 0, none)")
    learner.add_argument("--seed", type=int, default=0)
    learner.add_argument("--init-from", metavar="PATH", default=None,
                         help="start from this checkpoint's weights (e.g. a behaviour-cloned policy, or 'default' "
                         "for the shipped one) when the checkpoint folder has none to resume; its model size wins")
    learner.add_argument("--recipe-command", metavar="TEXT", default=None,
                         help="the command that started this run, kept in its checkpoints' recipe (magerl train "
                         "passes its own, so a checkpoint says which decks and opponents it trained on)")
    _model_args(learner)
    _metrics_args(learner)
    learner.set_defaults(func=cmd_learner)

    worker = sub.add_parser("worker", help="play games with the current policy and stream episodes to the learner")
    _learner_addr_args(worker)
    worker.add_argument("--runners", type=int, default=None,
                        help="game-runner processes (default: $NUM_GAME_RUNNERS, else CPU count - 1, at least 1)")
    worker.add_argument("--deck", action="append", metavar="DECK", help="decks to draw from (default: the standard decks)")
    worker.add_argument("--policy-deck", action="append", metavar="DECK",
                        help="decks the learning policy's seat draws from; the opponent's still come from --deck, and "
                        "against itself the other seat learns only when it plays one of these (default: those of --deck)")
    worker.add_argument("--opponents", default=None, metavar="MIX",
                        help="opponent weights, e.g. self=0.4,snapshot=0.2,engine:easy=0.2,engine:medium=0.2 "
                        "(an engine:DIFFICULTY weight is required)")
    worker.add_argument("--max-turns", type=int, default=Limits.max_turns)
    worker.add_argument("--max-prompts", type=int, default=Limits.max_prompts)
    worker.add_argument("--capped-games", choices=("drop", *CAPPED_REWARD), default="drop",
                        help="what a game stopped at --max-turns or --max-prompts teaches: nothing (drop, the default), "
                        "or the learning seat's loss, or a draw")
    worker.add_argument("--seed", type=int, default=0)
    _add_card_db(worker)
    _metrics_args(worker)
    worker.set_defaults(func=cmd_worker)

    evaluator = sub.add_parser("evaluator", help="evaluate the learner's latest policy against fixed opponents")
    _learner_addr_args(evaluator)
    evaluator.add_argument("--opponent", action="append", metavar="AGENT",
                           help="fixed opponents (default: random, engine:easy, engine:medium, engine:hard)")
    evaluator.add_argument("--games", type=int, default=8, help="games per opponent per evaluation (default 8)")
    evaluator.add_argument("--every", type=int, default=20, help="updates between evaluations (default 20)")
    evaluator.add_argument("--deck", action="append", metavar="DECK")
    evaluator.add_argument("--policy-deck", action="append", metavar="DECK",
                           help="decks the policy plays, repeatable, each against every deck (default: all)")
    _add_card_db(evaluator)
    _metrics_args(evaluator)
    evaluator.set_defaults(func=cmd_evaluator)

    train = sub.add_parser("train", help="learner, workers and evaluator as local processes, with a live view")
    train.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    train.add_argument("--runners", type=int, default=None, help="game runners per worker (default: CPU count - 1, at least 1)")
    stop = train.add_mutually_exclusive_group()
    stop.add_argument("--updates", type=int, default=None, help="stop after this many learner updates")
    stop.add_argument("--hours", type=float, default=None, help="stop after this many hours")
    train.add_argument("--run-dir", default=None, help="run folder (default: runs/YYYYmmdd-HHMMSS)")
    train.add_argument("--resume", action="store_true", help="continue the run folder's newest checkpoint")
    train.add_argument("--max-samples-per-batch", type=int, default=None)
    train.add_argument("--lr", type=float, default=None, help="the learner's learning rate (default: magerl learner's)")
    train.add_argument("--gae-lambda", type=float, default=None, help="the learner's GAE lambda (default: magerl learner's)")
    train.add_argument("--gamma", type=float, default=None, help="the learner's discount (default: magerl learner's)")
    train.add_argument("--ppo-epochs", type=int, default=None,
                       help="the learner's passes over each batch (default: magerl learner's)")
    train.add_argument("--entropy-coef", type=float, default=None,
                       help="the learner's entropy bonus weight (default: magerl learner's)")
    train.add_argument("--shaping", type=float, default=None,
                       help="the learner's reward shaping weight (default: magerl learner's)")
    train.add_argument("--checkpoint-every", type=int, default=10)
    train.add_argument("--eval-every", type=int, default=20, help="updates between evaluations (default 20)")
    train.add_argument("--eval-games", type=int, default=8, help="games per opponent per evaluation (default 8)")
    train.add_argument("--eval-opponent", action="append", metavar="AGENT", help="evaluation opponents (repeatable)")
    train.add_argument("--opponents", default=None, metavar="MIX", help="workers' opponent mix (see magerl worker)")
    train.add_argument("--capped-games", choices=("drop", *CAPPED_REWARD), default="drop",
                       help="what a game stopped at a cap teaches the workers' policy (see magerl worker)")
    train.add_argument("--policy-deck", action="append", metavar="DECK",
                       help="decks the learning policy plays, repeatable (default: all standard decks; "
                       "see magerl worker)")
    train.add_argument("--opponent-deck", action="append", metavar="DECK",
                       help="decks the other seat is dealt, repeatable; a deck named twice is dealt twice as often "
                       "(default: all standard decks, the policy's own among them; the evaluator keeps them all)")
    train.add_argument("--init-from", metavar="PATH", default=None,
                       help="start the learner from this checkpoint (see magerl learner --init-from); from a policy "
                       "set, the network of the one --policy-deck, else the set's others")
    _model_args(train)
    train.set_defaults(func=cmd_train)


def _check_ppo_flags(args: argparse.Namespace) -> None:
    """The PPO options `learner` and `train` share, checked where they are typed: `train`
    refuses a bad value itself rather than through the learner process it would start."""
    if args.gae_lambda is not None and not 0.0 <= args.gae_lambda <= 1.0:
        raise UsageError(f"--gae-lambda must be between 0 and 1, not {args.gae_lambda}")
    if args.gamma is not None and not 0.0 < args.gamma <= 1.0:
        raise UsageError(f"--gamma must be above 0 and at most 1, not {args.gamma}")
    if args.ppo_epochs is not None and args.ppo_epochs < 1:
        raise UsageError(f"--ppo-epochs must be at least 1, not {args.ppo_epochs}")
    for flag, value in (("--entropy-coef", args.entropy_coef), ("--shaping", args.shaping)):
        if value is not None and value < 0:
            raise UsageError(f"{flag} must not be negative, not {value}")


def cmd_learner(args: argparse.Namespace) -> int:
    from magerl.learner.batch_size import max_samples_per_batch
    from magerl.learner.ppo import PPOConfig
    from magerl.learner.server import LearnerConfig, run_learner
    from magerl.model.network import ModelConfig

    try:
        cap = args.max_samples_per_batch or max_samples_per_batch(512)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    _check_ppo_flags(args)
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, not {args.threads}")
    config = LearnerConfig(
        checkpoint_dir=Path(args.checkpoint_dir),
        episodes_address=f"tcp://{args.bind_host}:{args.episodes_port}",
        weights_address=f"tcp://{args.bind_host}:{args.weights_port}",
        model=ModelConfig(args.d_model, args.layers, args.heads),
        ppo=PPOConfig(lr=args.lr, **{field: value for field, value in (
            ("gae_lambda", args.gae_lambda), ("gamma", args.gamma), ("epochs", args.ppo_epochs),
            ("entropy_coef", args.entropy_coef), ("shaping", args.shaping))
            if value is not None}),
        max_samples_per_batch=cap,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints,
        max_updates=args.max_updates,
        device=args.device,
        threads=args.threads,
        seed=args.seed,
        init_from=args.init_from,
        command=args.recipe_command,
    )
    if args.init_from:
        from magerl.learner.checkpoint import find

        try:
            find(args.init_from)
        except ValueError as exc:
            raise UsageError(f"--init-from: {exc}") from exc
    run_learner(config, port=args.metrics_port, addr=args.metrics_addr)
    return 0


def _load_decks(specs: list[str] | None, cards: CardDatabase) -> list[Deck]:
    """The given decks (default: the standard ones); every problem of every deck in one error."""
    problems: list[str] = []
    decks = []
    for spec in specs or sorted(standard_decks()):
        try:
            decks.append(load_deck(spec, cards))
        except DeckError as exc:
            problems += exc.problems
    if problems:
        raise UsageError("\n".join(problems))
    return decks


def _check_among(option: str, names: list[str] | None, decks: list[Deck], which: str = "decks") -> None:
    """An option naming some of the decks played (one seat's): an unknown name is refused, with the choices."""
    unknown = [name for name in names or [] if name not in {deck.name for deck in decks}]
    if unknown:
        raise UsageError(f"{option} {unknown[0]!r} is not among the {which}: {', '.join(d.name for d in decks)}")


def _decks_checked(specs: list[str] | None, card_db: str | None) -> list[str]:
    """Deck specs for a service, validated before any process starts."""
    _load_decks(specs, _load_cards(card_db))
    return specs or sorted(standard_decks())


def cmd_worker(args: argparse.Namespace) -> int:
    from magerl.worker.runner import DEFAULT_OPPONENTS, RunnerConfig, parse_opponents
    from magerl.worker.supervisor import default_runners, run_worker

    try:
        runners = args.runners or default_runners()
        opponents = parse_opponents(args.opponents or os.environ.get("MAGERL_OPPONENTS") or DEFAULT_OPPONENTS)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    config = RunnerConfig(
        episodes_address=f"tcp://{args.learner}:{args.episodes_port}",
        weights_address=f"tcp://{args.learner}:{args.weights_port}",
        decks=_decks_checked(args.deck, args.card_db),
        opponents=opponents,
        policy_decks=_decks_checked(args.policy_deck, args.card_db) if args.policy_deck else None,
        card_db=args.card_db,
        limits=Limits(args.max_turns, args.max_prompts),
        seed=args.seed,
        capped=args.capped_games,
    )
    run_worker(config, runners, port=args.metrics_port, addr=args.metrics_addr)
    return 0


def cmd_evaluator(args: argparse.Namespace) -> int:
    from magerl.evaluator.service import DEFAULT_OPPONENTS, EvaluatorConfig, run_evaluator

    opponents = tuple(args.opponent or DEFAULT_OPPONENTS)
    for spec in opponents:
        try:
            make_agent(spec)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    decks = _decks_checked(args.deck, args.card_db)
    policy_decks = _decks_checked(args.policy_deck, args.card_db) if args.policy_deck else None
    # a policy deck outside --deck is played too (a worker takes one); schedule() pairs decks by index
    decks = decks + [deck for deck in policy_decks or [] if deck not in decks]
    config = EvaluatorConfig(
        weights_address=f"tcp://{args.learner}:{args.weights_port}",
        opponents=opponents,
        games=args.games,
        every_updates=args.every,
        decks=decks,
        policy_decks=policy_decks,
        card_db=args.card_db,
    )
    run_evaluator(config, port=args.metrics_port, addr=args.metrics_addr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    args.agent = [f"policy:{args.checkpoint}", args.opponent]
    args.max_turns, args.max_prompts = Limits.max_turns, Limits.max_prompts
    try:
        from magerl.model.agent import policy_agent

        policy_agent(args.checkpoint)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return cmd_play(args)


def cmd_train(args: argparse.Namespace) -> int:
    from magerl.learner.checkpoint import list_checkpoints
    from magerl.train import TrainOptions, Trainer

    _check_ppo_flags(args)
    run_dir = Path(args.run_dir or Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    has_checkpoints = bool(list_checkpoints(run_dir / "checkpoints"))
    if has_checkpoints and not args.resume:
        raise UsageError(f"{run_dir} already has checkpoints: pass --resume to continue it, or choose another --run-dir")
    if args.resume and not has_checkpoints:
        raise UsageError(f"--resume: {run_dir} has no checkpoint to continue")
    model = ["--d-model", str(args.d_model), "--layers", str(args.layers), "--heads", str(args.heads)]
    learner = [*model, "--checkpoint-every", str(args.checkpoint_every),
               "--recipe-command", "magerl " + shlex.join(args.argv)]
    for flag, value in (("--lr", args.lr), ("--gae-lambda", args.gae_lambda), ("--gamma", args.gamma),
                        ("--ppo-epochs", args.ppo_epochs), ("--entropy-coef", args.entropy_coef),
                        ("--shaping", args.shaping)):
        if value is not None:  # unset: the learner's own default
            learner += [flag, str(value)]
    if args.init_from:
        from magerl.learner.checkpoint import find

        # From a policy set, a run on one deck continues that deck's network.
        deck = args.policy_deck[0] if args.policy_deck and len(args.policy_deck) == 1 else None
        try:
            start = find(args.init_from, deck)
        except ValueError as exc:
            raise UsageError(f"--init-from: {exc}") from exc
        learner += ["--init-from", args.init_from if deck is None else str(start.path)]
    if args.max_samples_per_batch:
        learner += ["--max-samples-per-batch", str(args.max_samples_per_batch)]
    worker = ["--opponents", args.opponents] if args.opponents else []
    worker += ["--capped-games", args.capped_games]
    # the decks the policy learns: the workers deal them, the evaluator judges it on them
    policy_decks = _decks_checked(args.policy_deck, None) if args.policy_deck else []
    policy_flags = [flag for deck in policy_decks for flag in ("--policy-deck", deck)]
    worker += policy_flags
    if args.opponent_deck:  # the workers deal these to the other seat; the evaluator still plays every deck
        worker += [flag for deck in _decks_checked(args.opponent_deck, None) for flag in ("--deck", deck)]
    evaluator = ["--every", str(args.eval_every), "--games", str(args.eval_games), *policy_flags]
    for opponent in args.eval_opponent or []:
        evaluator += ["--opponent", opponent]
    from magerl.worker.supervisor import default_runners

    runners = args.runners or default_runners()
    # the runners play on all but the cores they leave; the learner trains on those (at least one)
    learner += ["--threads", str(max(1, (os.cpu_count() or 1) - args.workers * runners))]
    options = TrainOptions(
        run_dir=run_dir, workers=args.workers, runners=runners, updates=args.updates,
        hours=args.hours, resume=args.resume, learner_args=learner, worker_args=worker, evaluator_args=evaluator,
    )
    try:
        return Trainer(options).run()
    except RuntimeError as exc:
        raise UsageError(str(exc)) from exc


def cmd_imitate_record(args: argparse.Namespace) -> int:
    from magerl.game.agents import parse_mix
    from magerl.learner.imitation import record, teacher_games

    if not args.teacher.startswith("engine:"):
        raise UsageError("--teacher must be engine:DIFFICULTY")
    try:
        make_agent(args.teacher)
        make_agent(args.explore)
        mix = parse_mix(args.opponents)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if args.games < 1 or args.jobs < 1 or not 0 <= args.epsilon <= 1:
        raise UsageError("--games and --jobs must be at least 1, --epsilon within 0..1")
    cards = _load_cards(args.card_db)
    decks = _load_decks(args.deck, cards)
    names = [d.name for d in decks]
    _check_among("--teacher-deck", args.teacher_deck, decks)
    teacher_decks = tuple(names.index(d) for d in args.teacher_deck or [])
    plan = teacher_games(args.teacher, mix, args.games, len(decks), args.seed, args.epsilon, args.explore,
                         teacher_decks)
    out = Path(args.out)
    from tqdm import tqdm

    start = time.perf_counter()

    def tick(done: int, summary: dict[str, Any]) -> None:
        if bar is not None:
            bar.update(1)
        elif done % 10 == 0 or done == len(plan):  # not a terminal: a line now and then
            print(f"{done}/{len(plan)} games, {time.perf_counter() - start:.0f} s", flush=True)

    with _sigterm_as_interrupt():  # written games stay
        with tqdm(total=len(plan), unit="game", dynamic_ncols=True, disable=None) as bar:
            bar = bar if not bar.disable else None
            settings = {"teacher": args.teacher, "opponents": mix, "epsilon": args.epsilon, "explore": args.explore,
                        "seed": args.seed, "decks": names, "teacher_decks": args.teacher_deck}
            totals = record(str(cards.path), {d.name: d.cards() for d in decks}, plan, out, jobs=min(args.jobs, args.games),
                            progress=tick, settings=settings)
    print(f"{out} now holds {totals['games']} games ({totals['aborted']} aborted), {totals['episodes']} episodes, "
          f"{totals['decisions']} teacher decisions, {totals['seconds']:.0f} s of recording")
    return 0


def cmd_imitate_fit(args: argparse.Namespace) -> int:
    import torch

    from magerl.learner import checkpoint
    from magerl.learner.imitation import FitConfig, fit, read_episodes
    from magerl.model.network import ModelConfig, PolicyNet
    from magerl.transport.messages import MessageError

    episodes, ledgers = [], []
    for name in args.data:
        try:
            episodes += list(read_episodes(Path(name)))
            ledger = Path(name + ".json")
            ledgers.append(json.loads(ledger.read_text()) if ledger.exists() else {})
        except OSError as exc:
            raise UsageError(f"{name}: {exc.strerror}") from exc
        except MessageError as exc:
            raise UsageError(f"{name}: not an episode file this version can read ({exc}); "
                             "files recorded by an older version need recording again") from exc
    recorded = len(episodes)
    if args.max_episodes is not None:
        episodes = episodes[: args.max_episodes]
    if len(episodes) < 2:
        raise UsageError("need at least two recorded episodes")
    torch.manual_seed(args.seed)
    base = None
    if args.init_from:
        try:
            base = checkpoint.find(args.init_from)
        except ValueError as exc:
            raise UsageError(f"--init-from: {exc}") from exc
        model = base.model
    else:
        model = PolicyNet(ModelConfig(d_model=args.d_model, layers=args.layers, heads=args.heads))
    cfg = FitConfig(epochs=args.epochs, batch=args.batch, lr=args.lr, seed=args.seed)
    decisions = sum(e.length for e in episodes)
    print(f"{len(episodes)} episodes, {decisions} teacher decisions; "
          f"{sum(p.numel() for p in model.parameters())} parameters", flush=True)
    start = time.perf_counter()

    def report(epoch: int, figures: dict[str, float]) -> None:
        held = figures.get("holdout_agreement")
        print(f"epoch {epoch}/{cfg.epochs}: loss {figures['loss']:.3f}, agreement train {figures['train_agreement']:.1%}"
              + (f" held-out {held:.1%}" if held is not None else "") + f", {figures['samples_per_second']:.0f} samples/s",
              flush=True)

    figures = fit(model, episodes, cfg, report)
    fit_seconds = time.perf_counter() - start
    # recording time of the episodes used, pro rata when only the first N of the files are
    record_seconds = sum(float(ledger.get("seconds", 0.0)) for ledger in ledgers) * len(episodes) / recorded
    compute = {"episodes": len(episodes), "decisions": decisions, "record_seconds": round(record_seconds, 1),
               "fit_seconds": round(fit_seconds, 1), "seconds": round(record_seconds + fit_seconds, 1),
               "cpu_cores": os.cpu_count(), "device": "cpu"}
    base_recipe = (base.state.get("recipe") or {}) if base else {}
    if base:  # the policy's whole cost: what its starting point took, plus this
        before = base_recipe.get("compute") or {}
        for key in ("episodes", "decisions", "record_seconds", "fit_seconds", "seconds"):
            compute[key] = round(compute[key] + (before.get(key) or 0), 1)
    recipe = {
        "method": "behaviour cloning",
        "teacher": sorted({str(e.meta.get("teacher")) for e in episodes}),
        "opponents": sorted({str(e.meta.get("opponent")) for e in episodes}),
        "data": args.data,
        "recordings": ledgers,
        "arguments": {k: v for k, v in vars(args).items() if k != "func"},
        "fit": {**cfg.__dict__},
        "figures": figures,
        "compute": compute,
    }
    if base:
        recipe["base"] = {"checkpoint": args.init_from, "recipe": base_recipe}
    path = checkpoint.save(Path(args.out), 0, model, None, {"version": 0, "recipe": recipe})
    print(f"checkpoint written: {path}")
    return 0


def cmd_ladder_run(args: argparse.Namespace) -> int:
    from magerl.evaluator.ladder import LADDER, format_ladder, run_ladder
    from magerl.learner.checkpoint import locate

    if args.games < 1 or args.jobs < 1:
        raise UsageError("--games and --jobs must be at least 1")
    try:
        path = locate(args.checkpoint)
        opponents = tuple(args.opponent or LADDER)
        for opponent in opponents:
            make_agent(opponent)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    cards = _load_cards(args.card_db)
    decks = _load_decks(args.deck, cards)
    _check_among("--policy-deck", args.policy_deck, decks, "ladder's decks")
    out = Path(args.out) if args.out else None
    if args.resume and not out:
        raise UsageError("--resume needs --out: the report to continue")
    resume = _read_report(out) if args.resume and out.exists() else None
    if resume is not None and not isinstance(resume, dict):
        raise UsageError(f"{out}: not a ladder report")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)

    def save(report: dict[str, Any]) -> None:  # after each opponent: a stopped ladder keeps its results
        print(format_ladder(report).splitlines()[-1], flush=True)
        if out:
            out.write_text(json.dumps(report, indent=1) + "\n")

    try:
        with _sigterm_as_interrupt():  # the opponents finished stay in --out
            report = run_ladder(cards, decks, path, opponents=opponents, games=args.games, seed=args.seed,
                                jobs=min(args.jobs, args.games), greedy=args.greedy, on_opponent=save, resume=resume,
                                policy_decks=args.policy_deck)
    except ValueError as exc:
        raise UsageError(f"{out}: {exc}") from exc
    print(format_ladder(report))
    if out:
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"report written: {out}")
    return 0


def cmd_policy_set(args: argparse.Namespace) -> int:
    from magerl.learner.checkpoint import write_policy_set

    decks: dict[str, str] = {}
    for item in args.deck:
        deck, eq, spec = item.partition("=")
        name = deck if deck in standard_decks() else Path(deck).stem if Path(deck).is_file() else None
        if not eq or not spec or name is None:
            raise UsageError(f"--deck {item!r}: write DECK=PATH with DECK one of {', '.join(sorted(standard_decks()))} "
                             "or a decklist file")
        if name in decks:
            raise UsageError(f"--deck {name!r} is given twice")
        decks[name] = spec
    command = shlex.join(["magerl", "policy-set", "--out", args.out, "--others", args.others,
                          *(arg for item in args.deck for arg in ("--deck", item))])
    try:
        out = write_policy_set(Path(args.out), args.others, decks, command)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    for name, spec in decks.items():
        print(f"{name:<18}{spec}")
    print(f"{'every other deck':<18}{args.others}")
    print(f"policy set written: {out}")
    return 0


def cmd_ladder_plot(args: argparse.Namespace) -> int:
    from magerl.evaluator.ladder import plot

    reports = [_read_report(Path(name)) for name in args.reports]
    try:
        plot(reports, Path(args.out))
    except ImportError as exc:
        raise UsageError(f"plotting needs matplotlib: pip install 'magerl[report]' ({exc})") from exc
    except KeyError as exc:
        raise UsageError(f"not a ladder report: missing {exc}") from exc
    print(f"plot written: {args.out}")
    return 0


def cmd_ladder_compare(args: argparse.Namespace) -> int:
    from magerl.evaluator.ladder import format_comparison

    if len(args.reports) % 2:
        raise UsageError(f"compare takes reports in pairs, A then B (A B [A B ...]); got {len(args.reports)}")
    reports = [_read_report(Path(name)) for name in args.reports]
    try:
        print(format_comparison(list(zip(reports[0::2], reports[1::2])), args.deck, args.opponent_deck))
    except (KeyError, TypeError) as exc:
        raise UsageError(f"not a ladder report: missing {exc}") from exc
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return 0


def _read_report(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not JSON ({exc})") from exc


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
    decks = _load_decks(args.deck, cards)
    limits = Limits(max_turns=args.max_turns, max_prompts=args.max_prompts)
    start = time.perf_counter()
    try:
        with _sigterm_as_interrupt():
            records = run_match(
                cards, decks, agents, games=args.games, seed=args.seed, jobs=min(args.jobs, args.games), limits=limits,
            )  # progress goes to stderr, so --json's stdout stays one document
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
        "time to choose per decision: " + ", ".join(
            f"{label} {ms:.2f} ms" for label, ms in zip(labels, report.decision_ms) if ms is not None),
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


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """`kill` (a scheduler, a container stop) stops a long command as Ctrl-C does, so it
    keeps what it finished and its game processes stop with it rather than play on orphaned."""

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `train` records it in its recipe
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
