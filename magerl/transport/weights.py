"""Weights messages: a policy version and its parameters, published by the learner."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from magerl.model.network import ModelConfig
from magerl.telemetry.logs import EventLog
from magerl.transport.messages import Message, MessageError, decode_message, encode_message
from magerl.transport.sockets import WeightsSubscriber


def weights_to_bytes(version: int, config: ModelConfig, model: torch.nn.Module) -> bytes:
    arrays = {name: t.detach().to("cpu", torch.float32).numpy() for name, t in model.state_dict().items()}
    return encode_message("weights", {"version": version, "config": config.to_dict()}, arrays)


def parse_weights(message: Message) -> tuple[int, ModelConfig, dict[str, torch.Tensor]]:
    if message.kind != "weights":
        raise MessageError("malformed", f"expected weights, got {message.kind}")
    version, config = message.meta.get("version"), message.meta.get("config")
    if not isinstance(version, int) or version < 0 or not isinstance(config, dict):
        raise MessageError("malformed", "weights need a version and a config")
    try:
        model_config = ModelConfig(**config)
    except TypeError as exc:
        raise MessageError("malformed", f"bad model config: {exc}") from None
    state: dict[str, Any] = {}
    for name, array in message.arrays.items():
        if array.dtype != np.float32 or not np.isfinite(array).all():
            raise MessageError("malformed", f"weight {name!r} is not finite float32")
        state[name] = torch.from_numpy(array.copy())
    return version, model_config, state


def latest_weights(subscriber: WeightsSubscriber, log: EventLog,
                   timeout_ms: int = 0) -> tuple[int, ModelConfig, dict[str, torch.Tensor]] | None:
    """The newest weights received, if any; a bad message is logged, counted and skipped."""
    raw = subscriber.latest(timeout_ms)
    if raw is None:
        return None
    try:
        return parse_weights(decode_message(raw))
    except MessageError as exc:
        log.error("weights_rejected", kind=exc.kind, component="transport", exc=exc)
        return None
