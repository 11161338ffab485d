"""The game adapter: one engine game driven as a sequence of agent decisions.

What it adds to the bare engine, each for a measured reason (../shared/engine-notes.md):
- the actor of every prompt, mulligans included (both players' mulligan options arrive
  merged, with duplicates);
- combat as per-creature choices: the engine lists only n+2 attack declarations (none,
  all, each alone) and single blocks; we ask about each attacker and each blocker in
  turn and submit the combined declaration, so any legal subset is reachable;
- who attacks and blocks in this turn's combat, which the engine's objects do not say,
  shown in each observation (declared and still being declared);
- prompts with one legal action (mostly "pass priority") applied without asking;
- a cap on turns and prompts, because engine AIs can stall for 100+ turns;
- every engine failure, Rust panics included (`PanicException` derives from
  BaseException), turned into one typed `EngineError` that ends the game, not the process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Callable, TypeVar

import phase
from phase import GameAction

from magerl.game import engine_json
from magerl.game.observation import CombatRoles, Observation, ObservationCache, observe

engine_json.install()  # the engine decodes each answer with json.loads: make that orjson

T = TypeVar("T")

#: Steps in which this turn's declared attackers and blockers are still in combat.
COMBAT_STEPS = frozenset(("DeclareAttackers", "DeclareBlockers", "FirstStrikeDamage", "CombatDamage", "EndCombat"))

#: Engine labels of the built-in AI, by the lower-case names magerl uses.
DIFFICULTIES = {"veryeasy": "VeryEasy", "easy": "Easy", "medium": "Medium", "hard": "Hard", "veryhard": "VeryHard"}


class EngineError(RuntimeError):
    """An engine call failed (ValueError, Rust panic, ...): carries the prompt it failed at."""

    def __init__(self, message: str, *, call: str, prompt: Any, cause: BaseException) -> None:
        super().__init__(f"{call}: {type(cause).__name__}: {message}")
        self.call = call
        self.prompt = prompt
        self.cause_type = type(cause).__name__


@dataclass(frozen=True)
class Limits:
    """Caps that turn a stalled game into an aborted one (counted, never a hang)."""

    max_turns: int = 60
    max_prompts: int = 4000


# What a game stopped at a cap may be scored as for training (`magerl worker --capped-games`),
# instead of being dropped.
CAPPED_REWARD = {"loss": -1.0, "draw": 0.0}


@dataclass
class GameResult:
    winner: int | None  # seat, None for a draw or an aborted game
    turns: int
    prompts: int  # engine prompts answered, automatic ones included
    decisions: list[int]  # decisions asked of each seat's agent
    seconds: float
    aborted: str | None = None  # "max_turns", "max_prompts", "engine_error"
    error: str | None = None
    act_seconds: list[float] = field(default_factory=lambda: [0.0, 0.0])  # time each seat's agent spent choosing


class Candidate:
    """One legal choice. `action` is an engine action, or None for a combat step.

    Combat steps: kind "Attack" (attacker, target or None to hold back) or "Block"
    (blocker, attacker or None to stop blocking).
    """

    def __init__(self, kind: str, action: GameAction | None = None, subject: int | None = None, target: Any = None):
        self.kind = kind
        self.action = action
        self.subject = subject
        self.target = target

    @cached_property
    def data(self) -> dict[str, Any]:
        """The engine's payload for this choice (decoded on demand: it costs a conversion)."""
        if self.action is not None:
            return self.action.data or {}
        return {"subject": self.subject, "target": self.target}

    def __repr__(self) -> str:
        return f"Candidate({self.kind}, {self.data})"


class Decision:
    """A choice asked of the agent in `seat`: pick an index into `candidates`."""

    def __init__(self, session: "GameSession", seat: int, prompt: str, candidates: list[Candidate]):
        self.session = session
        self.seat = seat
        self.prompt = prompt
        self.candidates = candidates

    @cached_property
    def observation(self) -> Observation:
        """What the acting seat may know (built on demand: ~1 ms)."""
        return self.session.observe(self.seat, self.prompt)

    def engine_choice(self, difficulty: str) -> int:
        """The index of the candidate the engine's built-in AI would pick here."""
        return self.session.engine_choice(self, difficulty)


class _Combat:
    """Per-creature combat choices accumulated into one declaration."""

    def __init__(self, prompt: str, seat: int, subjects: list[int], options: dict[int, list[Any]], capacity: dict[int, int]):
        self.prompt = prompt
        self.seat = seat
        self.subjects = subjects
        self.options = options
        self.capacity = capacity
        self.position = 0
        self.chosen: list[tuple[int, Any]] = []
        self.plans: dict[str, dict[int, list[Any]]] = {}  # engine AI plan per difficulty

    def candidates(self) -> list[Candidate]:
        subject = self.subjects[self.position]
        kind = "Attack" if self.prompt == "DeclareAttackers" else "Block"
        taken = [t for s, t in self.chosen if s == subject]
        return [Candidate(kind, subject=subject)] + [
            Candidate(kind, subject=subject, target=t) for t in self.options[subject] if t not in taken
        ]

    def record(self, candidate: Candidate) -> None:
        subject = candidate.subject
        assert subject is not None
        if candidate.target is None:
            self.position += 1
            return
        self.chosen.append((subject, candidate.target))
        used = sum(1 for s, _ in self.chosen if s == subject)
        remaining = [t for t in self.options[subject] if (subject, t) not in self.chosen]
        # Attackers pick one target; blockers may block up to their capacity.
        if self.prompt == "DeclareAttackers" or used >= self.capacity.get(subject, 1) or not remaining:
            self.position += 1

    def roles(self, declared: CombatRoles) -> CombatRoles:
        """`declared` with this declaration's choices so far added."""
        subjects = frozenset(s for s, _ in self.chosen)
        if self.prompt == "DeclareAttackers":
            return replace(declared, attacking=declared.attacking | subjects)
        attackers = frozenset(t for _, t in self.chosen)
        return replace(declared, blocking=declared.blocking | subjects, blocked=declared.blocked | attackers)

    @property
    def done(self) -> bool:
        return self.position >= len(self.subjects)

    def action(self) -> GameAction:
        if self.prompt == "DeclareAttackers":
            payload = {"attacks": [[s, t] for s, t in self.chosen], "bands": []}
        else:
            payload = {"assignments": [[s, t] for s, t in self.chosen]}
        return GameAction.from_dict({"type": self.prompt, "data": payload})


class GameSession:
    """One game between two decks, advanced decision by decision."""

    def __init__(
        self,
        engine: phase.Engine,
        decks: tuple[list[str], list[str]],
        *,
        seed: int,
        first_player: int = 0,
        limits: Limits = Limits(),
    ) -> None:
        self.limits = limits
        self.first_player = first_player
        self.prompts = 0
        self.decisions = [0, 0]
        self.winner: int | None = None
        self.aborted: str | None = None
        self.error: EngineError | None = None
        self._over = False
        self._combat: _Combat | None = None
        self._declared: tuple[int, CombatRoles] = (0, CombatRoles())  # turn, that turn's submitted combat
        self._pending: Decision | None = None
        self._seen = ObservationCache()
        self._observed: tuple[tuple[int, str, int], Observation] | None = None
        self._start = time.perf_counter()
        self.game = self._call(
            "new_game", None, engine.new_game, decks[0], decks[1], seed=seed, first_player=first_player
        )

    # -- engine calls --------------------------------------------------------------
    def _call(self, name: str, prompt: Any, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # pyo3's PanicException is a BaseException
            error = EngineError(str(exc), call=name, prompt=prompt, cause=exc)
            self._finish(None, aborted="engine_error", error=error)
            raise error from exc

    def _finish(self, winner: int | None, *, aborted: str | None = None, error: EngineError | None = None) -> None:
        self._over = True
        self.winner, self.aborted, self.error = winner, aborted, error
        self._combat = self._pending = None

    # -- the decision loop ---------------------------------------------------------
    def next_decision(self) -> Decision | None:
        """Advance to the next real choice; None once the game has ended or was aborted."""
        if self._pending is not None:
            return self._pending
        game = self.game
        while not self._over:
            if self._combat is not None:
                if not self._combat.done:
                    return self._ask(self._combat.seat, self._combat.prompt, self._combat.candidates())
                combat, self._combat = self._combat, None
                turn, declared = self._declared
                self._declared = (game.turn, combat.roles(declared if turn == game.turn else CombatRoles()))
                self._apply(combat.seat, combat.action(), combat.prompt)
                continue
            if game.turn > self.limits.max_turns:
                self._finish(None, aborted="max_turns")
                break
            if self.prompts >= self.limits.max_prompts:
                self._finish(None, aborted="max_prompts")
                break
            prompt = self._call("waiting_for", None, game.waiting_for)
            kind = prompt["type"]
            data = prompt.get("data") or {}
            if kind == "GameOver":
                self._finish(data.get("winner"))
                break
            if kind == "DeclareAttackers" and data.get("valid_attacker_ids"):
                by_attacker = data["valid_attack_targets_by_attacker"]
                subjects = list(data["valid_attacker_ids"])
                self._combat = _Combat(kind, data["player"], subjects, {a: by_attacker[str(a)] for a in subjects}, {})
                continue
            if kind == "DeclareBlockers" and data.get("valid_blocker_ids"):
                targets = data["valid_block_targets"]
                subjects = [b for b in data["valid_blocker_ids"] if targets.get(str(b))]
                if subjects:
                    capacity = {int(k): v for k, v in (data.get("block_capacities") or {}).items()}
                    self._combat = _Combat(kind, data["player"], subjects, {b: targets[str(b)] for b in subjects}, capacity)
                    continue
            seat, actions = self._legal(prompt)
            if not actions:
                error = EngineError("no legal action", call="actions", prompt=prompt, cause=LookupError())
                self._finish(None, aborted="engine_error", error=error)
                raise error
            if len(actions) == 1:
                self._apply(seat, actions[0], prompt)
                continue
            return self._ask(seat, kind, [Candidate(a.kind, a) for a in actions])
        return None

    def _legal(self, prompt: dict[str, Any]) -> tuple[int, list[GameAction]]:
        actions = self._call("actions", prompt, self.game.actions)
        if prompt["type"] != "MulliganDecision":
            return prompt["data"]["player"], actions
        # Both players' mulligan options arrive merged: answer the first pending player.
        pending = prompt["data"]["pending"][0]
        wanted = "SelectCards" if pending["phase"]["type"] == "BottomCards" else "MulliganDecision"
        unique: list[GameAction] = []
        for action in actions:
            if action.kind == wanted and action not in unique:
                unique.append(action)
        return pending["player"], unique

    def _ask(self, seat: int, prompt: str, candidates: list[Candidate]) -> Decision:
        self._pending = Decision(self, seat, prompt, candidates)
        return self._pending

    def _apply(self, seat: int, action: GameAction, prompt: Any) -> None:
        self._call("apply", prompt, self.game.apply, seat, action)
        self.prompts += 1

    def choose(self, decision: Decision, index: int) -> None:
        """Answer `decision` with `decision.candidates[index]`."""
        if decision is not self._pending:
            raise ValueError("decision is not the one pending in this game")
        if not 0 <= index < len(decision.candidates):
            raise IndexError(f"candidate {index} out of range (0..{len(decision.candidates) - 1})")
        self._pending = None
        self.decisions[decision.seat] += 1
        candidate = decision.candidates[index]
        if candidate.action is None:
            assert self._combat is not None
            self._combat.record(candidate)
        else:
            self._apply(decision.seat, candidate.action, decision.prompt)

    # -- helpers for agents --------------------------------------------------------
    def observe(self, seat: int, prompt: str) -> Observation:
        """The seat's view; reused while no action has been applied (a combat's per-creature steps)
        but for its combat roles, which change with each per-creature choice."""
        key = (seat, prompt, self.prompts)  # every change to the game goes through _apply, which counts
        if self._observed is None or self._observed[0] != key:
            view = self._call("observe", prompt, observe, self.game, seat, prompt, self.first_player, self._seen)
            self._observed = (key, view)
        view = self._observed[1]
        turn, roles = self._declared
        if turn != view.turn or view.phase not in COMBAT_STEPS:
            roles = CombatRoles()
        if self._combat is not None:
            roles = self._combat.roles(roles)
        return view if roles == view.combat else replace(view, combat=roles)

    def evaluation(self, seat: int) -> float:
        """The engine's heuristic score of the position from `seat`'s side (higher is better;
        about ±50 once a game is decided between the standard decks)."""
        return float(self._call("evaluate_state", None, self.game.evaluate_state, seat))

    def engine_choice(self, decision: Decision, difficulty: str) -> int:
        """Index of the built-in AI's choice at `decision` (added if the engine lists it otherwise)."""
        label = DIFFICULTIES[difficulty.lower()]
        combat = self._combat
        if combat is not None:
            plan = combat.plans.get(label)
            if plan is None:
                plan = self._combat_plan(combat, label)
                combat.plans[label] = plan
            subject = decision.candidates[0].subject
            done = [t for s, t in combat.chosen if s == subject]
            wanted = [t for t in plan.get(subject, []) if t not in done]
            for i, candidate in enumerate(decision.candidates):
                if candidate.target is not None and wanted and candidate.target == wanted[0]:
                    return i
            return 0  # hold back / stop blocking
        action = self._call("choose_action", decision.prompt, self.game.choose_action, decision.seat, difficulty=label)
        if action is None:
            return 0
        for i, candidate in enumerate(decision.candidates):
            if candidate.action == action:
                return i
        # e.g. the same cards to bottom in another order: a legal action the list spells differently.
        decision.candidates.append(Candidate(action.kind, action))
        return len(decision.candidates) - 1

    def _combat_plan(self, combat: _Combat, label: str) -> dict[int, list[Any]]:
        action = self._call("choose_action", combat.prompt, self.game.choose_action, combat.seat, difficulty=label)
        plan: dict[int, list[Any]] = {}
        if action is None:
            return plan
        data = action.data or {}
        for subject, target in data.get("attacks") or data.get("assignments") or []:
            plan.setdefault(subject, []).append(target)
        return plan

    # -- outcome -------------------------------------------------------------------
    def result(self) -> GameResult:
        turns = self.game.turn if hasattr(self, "game") else 0
        return GameResult(
            winner=self.winner,
            turns=turns,
            prompts=self.prompts,
            decisions=list(self.decisions),
            seconds=time.perf_counter() - self._start,
            aborted=self.aborted,
            error=str(self.error) if self.error else None,
        )
