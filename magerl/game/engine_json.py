"""Faster decoding of the engine's answers.

phase-python hands every game query (battlefield, hands, players, an action's data) to
Python as JSON text decoded by `json.loads`, looked up on each call. That decoding is a
third of a policy decision's time (`bench/decision_latency.py`); orjson does it about
twice as fast with the same result. `install()` points `json.loads` at orjson for plain
calls. A call with options, or text orjson refuses (NaN, integers beyond 64 bits), goes
to the standard decoder, so every result is what `json.loads` would have returned.

A `Memo` goes further for one read asked again and again: its answer is decoded, and
what is made of it rebuilt, only when its text differs from the last answer's.
"""

from __future__ import annotations

import json
from typing import Any, Callable, TypeVar

import orjson

_standard = json.loads
T = TypeVar("T")


class Memo:
    """What was made from one engine read's last answer, kept with the answer's text.

    A policy's next look at the battlefield often finds it as it was (after a pass, or
    an opponent's choice that changed nothing): 47% of its observations in games
    against engine:easy. The engine still writes the text; `read` compares it with the
    last one (one memcmp, ~1 µs) and, when equal, returns what it made last time without
    decoding ~30 KB again. Only the product is kept, not the decoded answer: a decoded
    battlefield kept alive is thousands of objects for the garbage collector to scan and
    promote, which cost more than the decoding saved. One read at a time, in one thread
    (workers play in processes, one game per loop).
    """

    __slots__ = ("text", "made", "_new_text")

    def __init__(self) -> None:
        self.text: str | None = None
        self.made: Any = None
        self._new_text: str | None = None

    def read(self, call: Callable[[], Any], make: Callable[[Any], T]) -> T:
        """`make(call())` for a new answer of `call` (an engine read); the last product for the last answer."""
        global _memo
        _memo, self._new_text = self, None
        try:
            answer = call()
        finally:
            _memo = None
        if answer is _UNCHANGED:
            return self.made
        made = make(answer)
        self.text, self.made = self._new_text, made  # only once made: a failed `make` leaves no stale pair
        return made


_UNCHANGED = object()  # what the decoder hands the engine for a memo's repeated text
_memo: Memo | None = None  # the memo of the read in progress


def _loads(text: Any, **options: Any) -> Any:
    if options:
        return _standard(text, **options)
    memo = _memo
    if memo is not None:
        if text == memo.text:
            return _UNCHANGED
        memo._new_text = text
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return _standard(text)


def install() -> None:
    """Decode with orjson from now on, in this process."""
    json.loads = _loads
