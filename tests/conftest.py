"""Shared fixtures: one card database and engine per test session."""

from __future__ import annotations

import os
import shutil
import time

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


def require_tool(name: str) -> str:
    """Path of a system tool; skips without it, except in CI (MAGERL_REQUIRE_TOOLS=1) where it fails."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (Debian: `make test` installs it when run as root)"
    if os.environ.get("MAGERL_REQUIRE_TOOLS") == "1":
        pytest.fail(message + "; MAGERL_REQUIRE_TOOLS=1 forbids skipping")
    pytest.skip(message)


def fluent_bit_binary() -> str:
    """Fluent Bit: $MAGERL_FLUENT_BIT, the build cached by scripts/install-test-tools.sh, or PATH."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for candidate in (os.environ.get("MAGERL_FLUENT_BIT"), os.path.join(root, ".cache", "fluent-bit", "build", "bin", "fluent-bit")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return require_tool("fluent-bit")


def wait_until(what: str, check, timeout: float = 240.0, every: float = 0.5):
    """Poll `check` until it returns something truthy (connection errors count as not yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(every)
    pytest.fail(f"timed out waiting for: {what}")
