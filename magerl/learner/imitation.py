"""Behaviour cloning from the engine's built-in AI: the policy's starting point.

Self-play from a random policy learned nothing measurable at the compute one machine
has (docs/results.md). The engine's AI is a free, strong teacher, so a policy first
learns to predict its choices, decision by decision, then self-play (PPO) continues
from there. Teacher games are stored as the learner's own episode messages (the
teacher's choice as the action, the game's result as the return), in files of
length-prefixed frames: no pickle, validated on reading like network input.
"""

from __future__ import annotations

import json
import logging
import random
import struct
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from magerl.game.agents import EngineAIAgent, make_agent
from magerl.game.session import EngineError, GameSession, Limits
from magerl.learner.ppo import Batch, make_batch, slice_rows
from magerl.model.agent import one_core
from magerl.model.encoding import MAX_CANDIDATES, encode, stack
from magerl.model.network import PolicyNet, to_tensors
from magerl.transport.episodes import Episode, parse_episode
from magerl.transport.messages import decode_message

FRAME = struct.Struct("<I")
log = logging.getLogger(__name__)


# -- recording ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TeacherGame:
    seed: int
    teacher: str  # engine:DIFFICULTY
    opponent: str  # any agent spec; the teacher's own spec means both seats are recorded
    epsilon: float  # chance the teacher's seat plays the explorer's move (its label stays the teacher's)
    decks: tuple[int, int]
    teacher_seat: int
    explorer: str = "random"  # a policy here is DAgger: the teacher labels the states the policy reaches
    teacher_decks: tuple[int, ...] = ()  # the decks whose play is recorded; () records every deck


_proc: dict[str, Any] = {}


def _init(card_data: str, decks: dict[str, list[str]], limits: Limits) -> None:
    import phase

    one_core()
    _proc.update(engine=phase.Engine.from_path(card_data), decks=list(decks.values()), names=list(decks),
                 limits=limits)


def _deck_name(game: TeacherGame, seat: int) -> str:
    """The name of the deck `seat` plays: a policy set picks its network by it."""
    return _proc["names"][game.decks[seat]]


def play_teacher_game(game: TeacherGame) -> tuple[list[bytes], dict[str, Any]]:
    """One game; the teacher seats' decisions as episode messages, and a summary."""
    rng = random.Random(game.seed)
    difficulty = game.teacher.split(":", 1)[1]
    teacher = EngineAIAgent(difficulty)
    mirror = game.opponent == game.teacher
    agents: list[Any] = [teacher, teacher] if mirror else [None, None]
    if not mirror:
        agents[game.teacher_seat] = teacher
        opponent_deck = _deck_name(game, 1 - game.teacher_seat)
        agents[1 - game.teacher_seat] = make_agent(game.opponent, seed=game.seed, deck=opponent_deck)
    recorded = tuple(seat for seat in ((0, 1) if mirror else (game.teacher_seat,))
                     if not game.teacher_decks or game.decks[seat] in game.teacher_decks)
    explorer = (make_agent(game.explorer, seed=game.seed + 1, deck=_deck_name(game, game.teacher_seat))
                if game.epsilon else None)
    decks = _proc["decks"]
    seat_decks = [decks[game.decks[0]], decks[game.decks[1]]]
    steps: dict[int, list[tuple[Any, int]]] = {0: [], 1: []}
    try:
        session = GameSession(_proc["engine"], (seat_decks[0], seat_decks[1]), seed=game.seed, limits=_proc["limits"])
        while (decision := session.next_decision()) is not None:
            index = agents[decision.seat].act(decision)
            if decision.seat in recorded:
                if index < MAX_CANDIDATES:  # the policy cannot point further
                    steps[decision.seat].append((encode(decision.observation, decision.candidates), index))
                if explorer is not None and rng.random() < game.epsilon:
                    index = explorer.act(decision)
            session.choose(decision, index)
    except EngineError:
        pass
    result = session.result()
    summary = {"aborted": result.aborted, "winner": result.winner, "turns": result.turns, "seconds": result.seconds,
               "decisions": 0 if result.aborted else sum(len(steps[seat]) for seat in recorded)}
    if result.aborted:
        return [], summary
    messages = []
    for seat in recorded:
        if not steps[seat]:
            continue
        encoded, actions = zip(*steps[seat])
        arrays = stack(encoded)
        n = len(actions)
        arrays.update(actions=np.asarray(actions, np.int32), logp=np.zeros(n, np.float32),
                      values=np.zeros(n, np.float32), versions=np.zeros(n, np.int32))
        reward = 0.0 if result.winner is None else (1.0 if result.winner == seat else -1.0)
        meta = {"teacher": game.teacher, "opponent": game.opponent, "seed": game.seed, "turns": result.turns,
                "explorer": game.explorer, "epsilon": game.epsilon}
        messages.append(Episode(arrays, reward, meta).to_bytes())
    return messages, summary


def teacher_games(teacher: str, opponents: dict[str, float], games: int, n_decks: int, seed: int,
                  epsilon: float, explorer: str = "random", teacher_decks: tuple[int, ...] = ()) -> list[TeacherGame]:
    """`games` games against opponents drawn from the mix, decks and seats drawn evenly.

    With `teacher_decks` the teacher's seat plays one of them (drawn evenly) against any
    deck, and only those decks' play is recorded: data for one deck's network.
    """
    rng = random.Random(seed)
    names = list(opponents)
    plan = []
    for i in range(games):
        opponent = rng.choices(names, [opponents[n] for n in names])[0]
        decks = [rng.randrange(n_decks), rng.randrange(n_decks)]
        if teacher_decks:
            decks[i % 2] = rng.choice(teacher_decks)
        plan.append(TeacherGame(seed=seed + i, teacher=teacher, opponent=opponent, epsilon=epsilon,
                                decks=(decks[0], decks[1]), teacher_seat=i % 2, explorer=explorer,
                                teacher_decks=teacher_decks))
    return plan


def record(card_data: str, decks: dict[str, list[str]], plan: list[TeacherGame], out: Path, *, jobs: int,
           limits: Limits = Limits(), progress: Callable[[int, dict[str, Any]], None] | None = None,
           settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Play `plan` in `jobs` processes, appending each game's episodes to `out` as they finish.

    `OUT.json` beside the file keeps the running totals (games, decisions, seconds spent)
    and each run's `settings` across every run that appended to it: the recipe and the
    compute behind a policy fitted to the file.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    ledger = out.with_name(out.name + ".json")
    totals: dict[str, Any] = {"games": 0, "aborted": 0, "episodes": 0, "decisions": 0, "seconds": 0.0, "runs": []}
    if ledger.exists():
        totals.update(json.loads(ledger.read_text()))
    totals["runs"].append({**(settings or {}), "games": len(plan), "jobs": jobs})
    if out.exists():
        _drop_torn_frame(out)
    start, seconds = time.perf_counter(), totals["seconds"]
    pool = ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_init,
                               initargs=(card_data, decks, limits))
    try:
        with out.open("ab") as sink:
            for played, future in enumerate(as_completed([pool.submit(play_teacher_game, g) for g in plan]), 1):
                messages, summary = future.result()
                sink.write(b"".join(FRAME.pack(len(message)) + message for message in messages))
                totals["decisions"] += summary["decisions"]
                sink.flush()
                totals["games"] += 1
                totals["aborted"] += bool(summary["aborted"])
                totals["episodes"] += len(messages)
                totals["seconds"] = round(seconds + time.perf_counter() - start, 1)
                ledger.write_text(json.dumps(totals))
                if progress:
                    progress(played, summary)  # of this run's plan: the file may hold earlier runs' games
    finally:  # Ctrl-C or an error: games not yet started are dropped; those written stay whole
        pool.shutdown(wait=True, cancel_futures=True)
    return totals


def _frames(data: bytes) -> Iterator[tuple[int, int]]:
    """`(start, end)` of each whole frame's body in `data`; a torn last frame ends them."""
    offset = 0
    while offset + FRAME.size <= len(data):
        (size,) = FRAME.unpack_from(data, offset)
        if offset + FRAME.size + size > len(data):
            return
        yield offset + FRAME.size, offset + FRAME.size + size
        offset += FRAME.size + size


def _drop_torn_frame(path: Path) -> None:
    """Cut a frame that a killed run left half-written, so that what is appended next is read.

    Left in place, its length prefix would swallow the next run's first frames.
    """
    data = path.read_bytes()
    end = max((stop for _, stop in _frames(data)), default=0)
    if end < len(data):
        log.warning("%s: dropping the last %d bytes, a frame a stopped run left unfinished", path, len(data) - end)
        with path.open("r+b") as f:
            f.truncate(end)


def read_episodes(path: Path) -> Iterator[Episode]:
    """Episodes from a recorded file, each validated; a torn last frame (interrupted run) ends the file."""
    data = path.read_bytes()
    for start, stop in _frames(data):
        yield parse_episode(decode_message(data[start:stop]))


# -- fitting ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FitConfig:
    epochs: int = 6
    batch: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    value_coef: float = 0.5
    holdout: float = 0.1  # fraction of games kept out to measure agreement with the teacher
    seed: int = 0


def _losses(model: PolicyNet, batch: Batch, index: np.ndarray, value_coef: float) -> tuple[torch.Tensor, int]:
    logits, values = model(to_tensors(slice_rows(batch, index)))
    actions = torch.from_numpy(batch.actions[index]).long()
    policy = torch.nn.functional.cross_entropy(logits.float(), actions)
    value = (values.float() - torch.from_numpy(batch.returns[index])).pow(2).mean()
    agree = int((logits.argmax(-1) == actions).sum())
    return policy + value_coef * value, agree


def agreement(model: PolicyNet, batch: Batch, chunk: int = 1024) -> float:
    """Fraction of decisions where the policy's most likely candidate is the teacher's."""
    model.eval()
    hits = 0
    with torch.inference_mode():
        for start in range(0, len(batch), chunk):
            hits += _losses(model, batch, np.arange(start, min(start + chunk, len(batch))), 0.0)[1]
    return hits / max(len(batch), 1)


def holdout_split(rng: np.random.Generator, n: int, holdout: float) -> tuple[np.ndarray, np.ndarray]:
    """Episode indices (held out, trained on) as `fit` draws them from a fresh `default_rng(seed)`:
    anyone can score a fitted policy on the very games it never saw."""
    order = rng.permutation(n)
    cut = max(1, int(n * holdout)) if holdout > 0 and n > 1 else 0
    return order[:cut], order[cut:]


def fit(model: PolicyNet, episodes: list[Episode], cfg: FitConfig,
        on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, float]:
    """Train `model` to predict the teacher's choices (and the results); returns the last epoch's figures."""
    rng = np.random.default_rng(cfg.seed)
    held_out, trained = holdout_split(rng, len(episodes), cfg.holdout)
    held = make_batch([episodes[i] for i in held_out]) if len(held_out) else None
    train = make_batch([episodes[i] for i in trained])
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * -(-len(train) // cfg.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.lr, total_steps=steps, pct_start=0.1)
    figures: dict[str, float] = {}
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        start, losses, hits = time.perf_counter(), [], 0
        perm = rng.permutation(len(train))
        for first in range(0, len(train), cfg.batch):
            index = np.sort(perm[first : first + cfg.batch])
            loss, agree = _losses(model, train, index, cfg.value_coef)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            hits += agree
        figures = {"loss": float(np.mean(losses)), "train_agreement": hits / len(train),
                   "samples_per_second": len(train) / (time.perf_counter() - start), "train_decisions": len(train)}
        if held is not None:
            figures["holdout_agreement"] = agreement(model, held)
            figures["holdout_decisions"] = len(held)
        if on_epoch:
            on_epoch(epoch, figures)
    model.eval()
    return figures
