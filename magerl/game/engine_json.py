"""Faster decoding of the engine's answers.

phase-python hands every game query (battlefield, hands, players, an action's data) to
Python as JSON text decoded by `json.loads`, looked up on each call. That decoding is a
third of a policy decision's time (`bench/decision_latency.py`); orjson does it about
twice as fast with the same result. `install()` points `json.loads` at orjson for plain
calls. A call with options, or text orjson refuses (NaN, integers beyond 64 bits), goes
to the standard decoder, so every result is what `json.loads` would have returned.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_standard = json.loads


def _loads(text: Any, **options: Any) -> Any:
    if options:
        return _standard(text, **options)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return _standard(text)


def install() -> None:
    """Decode with orjson from now on, in this process."""
    json.loads = _loads
