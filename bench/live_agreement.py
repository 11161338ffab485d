"""Agreement with an engine AI on the policy's own games, per deck and by prompt.

`imitation_agreement.py` scores a policy on the teacher's recorded games; this plays the
policy (sampling, as on the ladder) with each given deck against an opponent playing every
standard deck, both seats, and at each of the policy's decisions also asks the engine AI
(`--teacher`) what it would pick there. Two choices agree when they mean the same move:
the same kind, naming the same cards by name and the same player (which of two Mountains
is played does not count). It shows where, in the states the policy itself reaches, it
chooses otherwise than the AI, and which way (attacks where the AI holds back, ...).

    python bench/live_agreement.py --checkpoint default --deck mono-red-burn --deck white-weenie --games 24
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict

from magerl.game.agents import make_agent
from magerl.game.cards import CardDatabase
from magerl.game.decks import load_deck, standard_decks
from magerl.game.play import play_game
from magerl.game.session import Candidate, Decision, GameSession
from magerl.model.agent import PolicyAgent, policy_agent
from magerl.model.encoding import candidate_refs


def meaning(decision: Decision, candidate: Candidate) -> tuple[str, ...]:
    """What a candidate does, without object ids: kind, the cards it names, the player it names."""
    names = {o.id: o.name for o in decision.observation.objects}
    if candidate.action is None and candidate.target is None:  # hold back / don't block
        return (candidate.kind, "none", names.get(candidate.subject, "?"))  # type: ignore[arg-type]
    ids, seats = candidate_refs(candidate)
    whom = "" if not seats else ("self" if seats[0] == decision.seat else "opponent")
    return (candidate.kind, *sorted(names.get(i, "?") for i in ids), whom)


def short(m: tuple[str, ...]) -> str:
    """A meaning as the table prints it: kind, and whether it names a player or a card."""
    kind, *rest = m
    if "none" in rest:
        return f"{kind} (hold back)"
    return kind + (" → player" if rest and rest[-1] == "opponent" else " → self" if rest and rest[-1] == "self" else "")


class Probe:
    """The policy, asking the teacher at each of its decisions and tallying both choices."""

    def __init__(self, policy: PolicyAgent, teacher: str, tally: list) -> None:
        self.policy, self.teacher, self.tally, self.name = policy, teacher, tally, policy.name

    def act(self, decision: Decision) -> int:
        choice = self.policy.act(decision)
        if len(decision.candidates) > 1:
            mine = meaning(decision, decision.candidates[choice])
            theirs = meaning(decision, decision.candidates[decision.engine_choice(self.teacher)])
            self.tally.append((decision.prompt, mine, theirs))
        return choice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--deck", action="append", required=True, help="the policy's deck (repeatable)")
    parser.add_argument("--teacher", default="hard", help="engine AI difficulty asked at each decision")
    parser.add_argument("--opponent", default="engine:easy")
    parser.add_argument("--games", type=int, default=24, help="games per policy deck")
    parser.add_argument("--seed", type=int, default=50_000)
    args = parser.parse_args()
    cards = CardDatabase.load()
    engine = cards.engine()
    pool = {name: load_deck(name, cards).cards() for name in sorted(standard_decks())}
    for deck in args.deck:
        mine = load_deck(deck, cards).cards()
        others = [name for name in pool if name != deck] or [deck]
        tally: list = []
        wins = 0
        for g in range(args.games):
            seat, seed = (g // len(others)) % 2, args.seed + g
            agents: list = [None, None]
            agents[seat] = Probe(policy_agent(args.checkpoint, seed), args.teacher, tally)
            agents[1 - seat] = make_agent(args.opponent, seed=seed)
            decks = (mine, pool[others[g % len(others)]]) if seat == 0 else (pool[others[g % len(others)]], mine)
            result = play_game(GameSession(engine, decks, seed=seed), agents)
            wins += not result.aborted and result.winner == seat
        by_prompt: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for prompt, a, b in tally:
            by_prompt[prompt][0] += a == b
            by_prompt[prompt][1] += 1
        agree = sum(a == b for _, a, b in tally)
        print(f"\n{deck}: won {wins} of {args.games} against {args.opponent}; "
              f"agrees with engine:{args.teacher} on {agree} of {len(tally)} choices ({agree / max(len(tally), 1):.0%})")
        for prompt, (same, n) in sorted(by_prompt.items(), key=lambda kv: -kv[1][1]):
            print(f"  {prompt:<26}{n:>6} choices  {same / n:5.0%} agree")
        print("  most frequent disagreements (policy / teacher):")
        for (a, b), n in Counter((short(a), short(b)) for _, a, b in tally if a != b).most_common(8):
            print(f"  {n:>6}  {a:<30} / {b}")


if __name__ == "__main__":
    main()
