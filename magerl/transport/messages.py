"""Wire format between workers and the learner: msgpack with raw array buffers. Never pickle.

A message is a msgpack map {"schema", "kind", "meta", "arrays"}; each array travels as
[dtype, shape, bytes]. Everything is validated on receipt; a bad message raises
`MessageError` whose `kind` is the bounded label counted in
mage_errors_total{component="transport"}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

SCHEMA = 1
MAX_MESSAGE_BYTES = 64 * 2**20
DTYPES = {"<f4", "<f2", "<i4", "<i8", "|u1", "|b1", "|i1"}
KINDS = ("episode", "weights")


class MessageError(ValueError):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind  # malformed | oversized | schema_version


@dataclass
class Message:
    kind: str
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]


def encode_message(kind: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    packed = {}
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        packed[name] = [array.dtype.str, list(array.shape), array.tobytes()]
    return msgpack.packb({"schema": SCHEMA, "kind": kind, "meta": meta, "arrays": packed}, use_bin_type=True)


def decode_message(raw: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    if len(raw) > max_bytes:
        raise MessageError("oversized", f"{len(raw)} bytes > {max_bytes}")
    try:
        body = msgpack.unpackb(raw, raw=False, strict_map_key=True, max_bin_len=max_bytes)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise MessageError("malformed", f"not msgpack: {type(exc).__name__}") from None
    if not isinstance(body, dict):
        raise MessageError("malformed", "not a map")
    if body.get("schema") != SCHEMA:
        raise MessageError("schema_version", f"schema {body.get('schema')!r}, expected {SCHEMA}")
    kind, meta, arrays = body.get("kind"), body.get("meta"), body.get("arrays")
    if kind not in KINDS or not isinstance(meta, dict) or not isinstance(arrays, dict):
        raise MessageError("malformed", "bad kind, meta or arrays")
    decoded = {}
    for name, spec in arrays.items():
        if not (isinstance(spec, list) and len(spec) == 3):
            raise MessageError("malformed", f"array {name!r} is not [dtype, shape, data]")
        dtype, shape, data = spec
        if dtype not in DTYPES or not isinstance(data, bytes) or not isinstance(shape, list):
            raise MessageError("malformed", f"array {name!r}: bad dtype or data")
        if not all(isinstance(s, int) and s >= 0 for s in shape):
            raise MessageError("malformed", f"array {name!r}: bad shape")
        expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if expected != len(data):
            raise MessageError("malformed", f"array {name!r}: {len(data)} bytes for shape {shape}")
        decoded[name] = np.frombuffer(data, dtype=dtype).reshape(shape)
    return Message(kind, meta, decoded)
