"""Card data: MTGJSON AtomicCards-shaped sources turned into the engine's card database.

The engine parses oracle text into abilities (`phase.build_oracle_face`). Parsing a full
MTGJSON dump takes a while, so the built `card-data.json` is cached on disk under a key
made of the source's content hash and the engine version: edit the source and the cache
rebuilds itself; upgrade the engine and it does too.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from functools import cached_property
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import phase
from phase import gen as phase_gen

#: Environment variable naming a user's MTGJSON AtomicCards.json(.gz) (same as --card-db).
CARD_DB_ENV = "MAGERL_CARD_DB"
#: Environment variable overriding where built card databases are cached.
CACHE_DIR_ENV = "MAGERL_CACHE_DIR"

ENGINE_VERSION = metadata.version("phase-python")


class CardDataError(ValueError):
    """A card source that cannot be read or built; the message names the file."""


def shipped_pool() -> Path:
    """The starter pool of Pauper commons that ships inside the package."""
    return Path(str(resources.files("magerl.game") / "data" / "pauper-starter-cards.json"))


def cache_dir() -> Path:
    base = os.environ.get(CACHE_DIR_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "magerl"
    )
    return Path(base)


def _read_source(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CardDataError(f"{path}: cannot read card data: {exc.strerror}") from exc
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise CardDataError(f"{path}: not a valid gzip file: {exc}") from exc
    return raw


def build_card_data(source: dict[str, Any], origin: str = "<memory>") -> tuple[dict[str, Any], list[str]]:
    """Build engine faces (keyed by lower-case name) from an AtomicCards-shaped dict.

    Uses phase's own generator logic card by card, so one card that fails to parse is
    reported and skipped instead of aborting the whole build (phase-gen stops silently).
    Returns the faces and the names that were skipped with their reason.
    """
    data = source.get("data") if isinstance(source, dict) else None
    if not isinstance(data, dict) or "cards" in data:
        raise CardDataError(f"{origin}: expected MTGJSON AtomicCards shape {{'data': {{name: [face, ...]}}}}")
    faces: dict[str, Any] = {}
    skipped: list[str] = []
    for name, group in data.items():
        if not isinstance(group, list):
            skipped.append(f"{name}: not a list of faces")
            continue
        try:
            phase_gen.process_group(group, faces)
        except Exception as exc:  # the parser raises assorted errors on odd cards
            skipped.append(f"{name}: {exc}")
    if not faces:
        raise CardDataError(f"{origin}: no card could be built")
    return faces, skipped


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class CardDatabase:
    """A built card database: the engine's `card-data.json` plus name lookups."""

    source: Path
    path: Path  # the built card-data.json the engine loads

    @classmethod
    def load(cls, source: str | os.PathLike[str] | None = None) -> "CardDatabase":
        """Load (building and caching on first use) the card database.

        `source` defaults to $MAGERL_CARD_DB, then to the shipped starter pool.
        """
        src = Path(source or os.environ.get(CARD_DB_ENV) or shipped_pool()).expanduser()
        raw = _read_source(src)
        key = hashlib.sha256(raw + ENGINE_VERSION.encode()).hexdigest()[:20]
        built = cache_dir() / f"card-data-{key}.json"
        if not built.exists():
            try:
                parsed = json.loads(raw)
            except ValueError as exc:
                raise CardDataError(f"{src}: not valid JSON: {exc}") from exc
            faces, _ = build_card_data(parsed, str(src))
            _write_atomically(built, json.dumps(faces, ensure_ascii=False, separators=(",", ":"), sort_keys=True))
        return cls(source=src, path=built)

    @cached_property
    def faces(self) -> dict[str, dict[str, Any]]:
        """Built faces by lower-case name."""
        with open(self.path, encoding="utf-8") as fh:
            return json.load(fh)

    @cached_property
    def names(self) -> dict[str, str]:
        """Lower-case name → the card's printed name."""
        return {key: face["name"] for key, face in self.faces.items()}

    def canonical(self, name: str) -> str | None:
        """The printed name of a card, matched case-insensitively; None when unknown."""
        return self.names.get(name.strip().lower())

    def is_basic(self, name: str) -> bool:
        face = self.faces.get(name.lower())
        return bool(face) and "Basic" in face["card_type"]["supertypes"]

    def engine(self) -> phase.Engine:
        """A fresh engine over this database (one per process; it cannot be pickled)."""
        return phase.Engine.from_path(str(self.path))


def unimplemented_parts(face: Any) -> list[str]:
    """Descriptions of every part of a built face that the engine could not parse."""
    found: list[str] = []

    def walk(node: Any, context: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "Unimplemented":
                found.append(str(node.get("description") or node.get("name") or context))
            ctx = node.get("description") or context
            for value in node.values():
                walk(value, ctx if isinstance(ctx, str) else context)
        elif isinstance(node, list):
            for value in node:
                walk(value, context)

    walk(face, face.get("name", "?") if isinstance(face, dict) else "?")
    return found


def keyword_name(keyword: Any) -> str:
    """The name of an engine keyword: "Flying" or {"Landwalk": "Swamp"} → "Landwalk"."""
    if isinstance(keyword, dict):
        return next(iter(keyword), "?")
    return str(keyword)
