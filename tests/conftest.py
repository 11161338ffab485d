"""Shared fixtures: one card database and engine per test session."""

from __future__ import annotations

import pytest

from magerl.game.cards import CardDatabase
from magerl.game.decks import Deck, load_deck, standard_decks


@pytest.fixture(scope="session")
def cards() -> CardDatabase:
    return CardDatabase.load()


@pytest.fixture(scope="session")
def engine(cards: CardDatabase):
    return cards.engine()


@pytest.fixture(scope="session")
def decks(cards: CardDatabase) -> dict[str, Deck]:
    return {name: load_deck(name, cards) for name in sorted(standard_decks())}
