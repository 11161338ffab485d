"""The shipped card pool builds fully, keywords survive, and the cache is keyed by content."""

from __future__ import annotations

import gzip
import json
import re

import pytest
from phase import build_oracle_face

from magerl.game.cards import CardDatabase, CardDataError, keyword_name, shipped_pool, unimplemented_parts

# Cards the engine (phase-python 0.103.0) parses only partly. Keep this list honest:
# a card leaving it means the engine got better; a card joining it means a regression.
PARTIAL_ALLOWLIST = {
    "Crypt Rats",  # "Spend only black mana on X" is not modelled
    "Vines of Vastwood",  # the "can't target that creature" clause is not modelled
}

# Keyword-only oracle lines are recognised only when MTGJSON's `keywords` lists them;
# without it the engine silently drops e.g. Flying. Oracle spelling → engine name.
KEYWORDS = {
    "flying": "Flying", "haste": "Haste", "deathtouch": "Deathtouch", "lifelink": "Lifelink",
    "trample": "Trample", "reach": "Reach", "vigilance": "Vigilance", "first strike": "FirstStrike",
    "double strike": "DoubleStrike", "flash": "Flash", "defender": "Defender", "menace": "Menace",
    "hexproof": "Hexproof", "indestructible": "Indestructible", "shroud": "Shroud", "prowess": "Prowess",
    "swampwalk": "Landwalk", "islandwalk": "Landwalk", "forestwalk": "Landwalk",
    "mountainwalk": "Landwalk", "plainswalk": "Landwalk",
}


def _source_faces() -> dict[str, dict]:
    data = json.loads(shipped_pool().read_text(encoding="utf-8"))["data"]
    return {name: faces[0] for name, faces in data.items()}


def lost_keywords(source: dict, face: dict) -> list[str]:
    """Keywords named on a keyword-only line of `source` that the built `face` lacks."""
    have = {keyword_name(k) for k in face.get("keywords", [])}
    lost = []
    for line in (source.get("text") or "").splitlines():
        line = re.sub(r"\(.*?\)", "", line).strip().lower()
        parts = [p.strip() for p in line.split(",")]
        if parts and all(p in KEYWORDS for p in parts):
            lost += [p for p in parts if KEYWORDS[p] not in have]
    return lost


def test_whole_starter_pool_builds(cards: CardDatabase) -> None:
    assert len(_source_faces()) == 123
    assert len(cards.faces) == 123
    assert cards.canonical("lightning BOLT") == "Lightning Bolt"
    assert cards.is_basic("Forest") and not cards.is_basic("Ash Barrens")


def test_only_allowlisted_cards_are_partly_unimplemented(cards: CardDatabase) -> None:
    partial = {face["name"] for face in cards.faces.values() if unimplemented_parts(face)}
    assert partial == PARTIAL_ALLOWLIST


def test_no_keyword_line_loses_its_keyword(cards: CardDatabase) -> None:
    lost = {}
    for name, source in _source_faces().items():
        missing = lost_keywords(source, cards.faces[name.lower()])
        if missing:
            lost[name] = missing
    assert lost == {}


def test_keyword_check_catches_the_silent_pitfall() -> None:
    source = dict(_source_faces()["Vampire Nighthawk"])
    source.pop("keywords")  # without MTGJSON's list the engine drops the keywords
    face = build_oracle_face(source, None)
    assert set(lost_keywords(source, face)) == {"flying", "deathtouch", "lifelink"}


def test_electrickery_text_corrected(cards: CardDatabase) -> None:
    face = cards.faces["electrickery"]
    assert "Choose one" not in face["oracle_text"]
    assert keyword_name(face["keywords"][0]) == "Overload"


def _atomic(names: list[str]) -> dict:
    source = _source_faces()
    return {"meta": {}, "data": {n: [source[n]] for n in names}}


def test_user_atomic_cards_gz_builds_and_caches(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MAGERL_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "AtomicCards.json.gz"
    path.write_bytes(gzip.compress(json.dumps(_atomic(["Forest", "Grizzly Bears"])).encode()))
    db = CardDatabase.load(path)
    assert sorted(db.names.values()) == ["Forest", "Grizzly Bears"]
    assert db.engine().card_count() == 2
    assert CardDatabase.load(path).path == db.path  # cached by content hash
    path.write_bytes(gzip.compress(json.dumps(_atomic(["Forest"])).encode()))
    assert CardDatabase.load(path).path != db.path  # new content, new build


def test_card_db_from_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MAGERL_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "cards.json"
    path.write_text(json.dumps(_atomic(["Island"])))
    monkeypatch.setenv("MAGERL_CARD_DB", str(path))
    assert list(CardDatabase.load().names.values()) == ["Island"]


@pytest.mark.parametrize(
    "content, message",
    [(b"{not json", "not valid JSON"), (b'{"data": []}', "AtomicCards shape"), (None, "cannot read")],
)
def test_bad_card_source_names_the_file(tmp_path, monkeypatch, content, message) -> None:
    monkeypatch.setenv("MAGERL_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CardDataError, match=message) as err:
        CardDatabase.load(path)
    assert str(path) in str(err.value)
