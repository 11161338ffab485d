"""Decklists: both formats parse, and every problem names file, line and card."""

from __future__ import annotations

import subprocess
import sys

import pytest

from magerl.game.decks import DeckError, load_deck, standard_decks

BURN = (standard_decks()["mono-red-burn"]).read_text()


def write(tmp_path, text: str, name: str = "deck.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(path, cards) -> list[str]:
    with pytest.raises(DeckError) as err:
        load_deck(path, cards)
    return err.value.problems


def test_standard_decks_are_valid(decks) -> None:
    assert sorted(decks) == ["dimir-control", "green-stompy", "mono-red-burn", "white-weenie"]
    for deck in decks.values():
        assert deck.size == 60 and len(deck.cards()) == 60


def test_misspelled_card_names_file_line_and_suggestion(tmp_path, cards) -> None:
    path = write(tmp_path, BURN.replace("Lightning Bolt", "Lightnig Bolt"))
    (problem,) = problems(path, cards)
    line = BURN.splitlines().index("4 Lightning Bolt") + 1
    assert problem == f'{path}:{line}: unknown card "Lightnig Bolt" (did you mean "Lightning Bolt"?)'


def test_text_format_comments_sideboard_and_case(tmp_path, cards) -> None:
    text = "# burn\n// also a comment\nDeck\n" + BURN.replace("4 Lava Spike", "4x lava spike") + "\nSideboard\n2 Smash\n"
    with pytest.raises(DeckError):  # "Smash" is not in the pool
        load_deck(write(tmp_path, text), cards)
    text = text.replace("2 Smash", "3 Electrickery\nSB: 2 Flame Slash")
    deck = load_deck(write(tmp_path, text), cards)
    assert deck.size == 60
    assert [(e.count, e.name) for e in deck.sideboard] == [(3, "Electrickery"), (2, "Flame Slash")]
    assert any(e.name == "Lava Spike" for e in deck.main)  # canonical spelling
    blank = load_deck(write(tmp_path, BURN + "\n2 Shock\n", "blank.txt"), cards)
    assert [e.name for e in blank.sideboard] == ["Shock"]


def test_size_and_copy_limits(tmp_path, cards) -> None:
    short = BURN.replace("20 Mountain", "19 Mountain")
    assert problems(write(tmp_path, short), cards) == [f"{tmp_path / 'deck.txt'}: main deck has 59 cards (at least 60)"]
    many = BURN.replace("4 Lightning Bolt", "5 Lightning Bolt").replace("20 Mountain", "19 Mountain")
    (problem,) = problems(write(tmp_path, many), cards)
    assert '5 copies of "Lightning Bolt"' in problem and ":7:" in problem
    # basic lands are exempt; sideboard copies count toward the limit
    assert load_deck(write(tmp_path, BURN.replace("20 Mountain", "24 Mountain")), cards).size == 64
    side = BURN + "\nSideboard\n1 Lightning Bolt\n"
    assert any('5 copies of "Lightning Bolt"' in p for p in problems(write(tmp_path, side), cards))


def test_unreadable_line(tmp_path, cards) -> None:
    (problem,) = problems(write(tmp_path, BURN + "Lightning Bolt\n"), cards)
    assert problem.startswith(f"{tmp_path / 'deck.txt'}:12: cannot read")


def _dek(entries: str) -> str:
    return f'<?xml version="1.0" encoding="utf-8"?>\n<Deck xmlns:xsd="http://www.w3.org/2001/XMLSchema">\n{entries}</Deck>\n'


def test_mtgo_dek(tmp_path, cards, decks) -> None:
    rows = "".join(
        f'  <Cards CatID="1" Quantity="{e.count}" Sideboard="false" Name="{e.name}" />\n'
        for e in decks["white-weenie"].main
    )
    rows += '  <Cards CatID="2" Quantity="2" Sideboard="true" Name="Oblivion Ring" />\n'
    deck = load_deck(write(tmp_path, _dek(rows), "ww.dek"), cards)
    assert deck.cards() == decks["white-weenie"].cards()
    assert [(e.count, e.name) for e in deck.sideboard] == [(2, "Oblivion Ring")]
    bad = rows.replace('Name="Squadron Hawk"', 'Name="Squadron Hwak"')
    (problem,) = problems(write(tmp_path, _dek(bad), "bad.dek"), cards)
    assert ':8: unknown card "Squadron Hwak" (did you mean "Squadron Hawk"?)' in problem
    (problem,) = problems(write(tmp_path, _dek(rows)[:-8], "cut.dek"), cards)
    assert "not valid .dek XML" in problem


def test_unknown_deck_name_lists_standard_decks(cards) -> None:
    (problem,) = problems("no-such-deck", cards)
    assert "mono-red-burn" in problem


def test_cli_exits_2_with_one_line(tmp_path) -> None:
    path = write(tmp_path, BURN.replace("Fireblast", "Fire Blast"))
    proc = subprocess.run(
        [sys.executable, "-m", "magerl.cli", "play", "--deck", str(path), "--deck", "white-weenie",
         "--agent", "random", "--agent", "random", "--games", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and '"Fire Blast"' in lines[0] and '"Fireblast"' in lines[0] and str(path) in lines[0]
