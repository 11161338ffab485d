"""Decklists: the usual text format and MTGO `.dek` XML, validated before any game.

The engine silently drops unknown card names and checks neither deck size nor copies,
so a typo would quietly play a 59-card deck. Every problem here names the file, the
line and the card, and suggests close matches.
"""

from __future__ import annotations

import difflib
import re
import xml.parsers.expat
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from magerl.game.cards import CardDatabase

MIN_MAIN = 60
MAX_SIDEBOARD = 15
MAX_COPIES = 4

_LINE = re.compile(r"^\s*(\d+)\s*x?\s+(.+?)\s*$", re.IGNORECASE)
_SECTION = re.compile(r"^\s*(deck|main ?deck|sideboard|side)\s*:?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Entry:
    count: int
    name: str
    line: int
    sideboard: bool = False


@dataclass(frozen=True)
class Deck:
    name: str
    path: Path
    main: tuple[Entry, ...]
    sideboard: tuple[Entry, ...] = ()

    def cards(self) -> list[str]:
        """The main deck as the engine takes it: one name per card."""
        return [e.name for e in self.main for _ in range(e.count)]

    @property
    def size(self) -> int:
        return sum(e.count for e in self.main)


@dataclass
class DeckError(ValueError):
    """One or more problems in a decklist; each problem is one line of text."""

    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(self.problems)


def standard_decks() -> dict[str, Path]:
    """The decks shipped with magerl, by name (file stem)."""
    folder = resources.files("magerl.game") / "data" / "decks"
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith((".txt", ".dek"))}


def resolve_deck_path(spec: str) -> Path:
    """A deck given as a path, or as the name of a shipped deck."""
    path = Path(spec).expanduser()
    if path.exists():
        return path
    shipped = standard_decks()
    if spec in shipped:
        return shipped[spec]
    known = ", ".join(sorted(shipped))
    raise DeckError([f"{spec}: no such deck file, and not a standard deck (standard decks: {known})"])


def _parse_text(text: str, origin: str) -> tuple[list[Entry], list[str]]:
    entries: list[Entry] = []
    problems: list[str] = []
    in_sideboard = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith(("#", "//")):  # comments; "//" inside a line is a split card
            continue
        if not line:
            # A blank line after main-deck cards starts the sideboard (MTGA/MTGO export style).
            if entries and not in_sideboard:
                in_sideboard = True
            continue
        section = _SECTION.match(line)
        if section:
            in_sideboard = section.group(1).lower().startswith("side")
            continue
        if line.upper().startswith("SB:"):
            match, sideboard = _LINE.match(line[3:]), True
        else:
            match, sideboard = _LINE.match(line), in_sideboard
        if not match:
            problems.append(f'{origin}:{number}: cannot read "{raw.strip()}" (expected "COUNT CARD NAME", e.g. "4 Lightning Bolt")')
            continue
        entries.append(Entry(int(match.group(1)), match.group(2), number, sideboard))
    return entries, problems


def _parse_dek(text: str, origin: str) -> tuple[list[Entry], list[str]]:
    entries: list[Entry] = []
    problems: list[str] = []
    parser = xml.parsers.expat.ParserCreate()

    def start(tag: str, attrs: dict[str, str]) -> None:
        if tag != "Cards":
            return
        number = parser.CurrentLineNumber
        name, quantity = attrs.get("Name", "").strip(), attrs.get("Quantity", "")
        if not name or not quantity.isdigit():
            problems.append(f"{origin}:{number}: <Cards> needs Name and a numeric Quantity")
            return
        entries.append(Entry(int(quantity), name, number, attrs.get("Sideboard", "false").lower() == "true"))

    parser.StartElementHandler = start
    try:
        parser.Parse(text, True)
    except xml.parsers.expat.ExpatError as exc:
        problems.append(f"{origin}:{exc.lineno}: not valid .dek XML: {xml.parsers.expat.ErrorString(exc.code)}")
    return entries, problems


def load_deck(spec: str | Path, cards: CardDatabase) -> Deck:
    """Read and validate a deck (a path or a standard deck name); raises DeckError."""
    path = resolve_deck_path(str(spec))
    origin = str(spec)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DeckError([f"{origin}: cannot read deck: {exc}"]) from exc
    parse = _parse_dek if path.suffix.lower() == ".dek" else _parse_text
    entries, problems = parse(text, origin)
    problems += _validate(entries, cards, origin)
    if problems:
        raise DeckError(problems)
    resolved = [Entry(e.count, cards.canonical(e.name) or e.name, e.line, e.sideboard) for e in entries]
    return Deck(
        name=path.stem,
        path=path,
        main=tuple(e for e in resolved if not e.sideboard),
        sideboard=tuple(e for e in resolved if e.sideboard),
    )


def _validate(entries: list[Entry], cards: CardDatabase, origin: str) -> list[str]:
    problems: list[str] = []
    copies: Counter[str] = Counter()
    first_line: dict[str, int] = {}
    for entry in entries:
        canonical = cards.canonical(entry.name)
        if canonical is None:
            problems.append(f'{origin}:{entry.line}: unknown card "{entry.name}"{_suggest(entry.name, cards)}')
            continue
        if entry.count < 1:
            problems.append(f'{origin}:{entry.line}: "{entry.name}" has count {entry.count}')
        copies[canonical] += entry.count
        first_line.setdefault(canonical, entry.line)
    for name, count in copies.items():
        if count > MAX_COPIES and not cards.is_basic(name):
            problems.append(f'{origin}:{first_line[name]}: {count} copies of "{name}" (at most {MAX_COPIES} except basic lands)')
    main = sum(e.count for e in entries if not e.sideboard)
    side = sum(e.count for e in entries if e.sideboard)
    if main < MIN_MAIN:
        problems.append(f"{origin}: main deck has {main} cards (at least {MIN_MAIN})")
    if side > MAX_SIDEBOARD:
        problems.append(f"{origin}: sideboard has {side} cards (at most {MAX_SIDEBOARD})")
    return problems


def _suggest(name: str, cards: CardDatabase) -> str:
    close = difflib.get_close_matches(name.lower(), list(cards.names), n=3, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(f'"{cards.names[c]}"' for c in close) + "?)"
