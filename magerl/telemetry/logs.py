"""JSON logs: one object per line on stdout, so Fluent Bit parses them without regexes.

Every line has `ts`, `level`, `component`, `event`, `pod` and `run_id`, then the event's
own fields. Log with the event name as the message and fields in `extra={"fields": ...}`,
or through `EventLog`, which also counts errors in `mage_errors_total`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import uuid
from datetime import datetime, timezone
from typing import Any, TextIO

from magerl.telemetry.metrics import Metrics

RUN_ID_ENV = "MAGERL_RUN_ID"


def pod_name() -> str:
    return os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or socket.gethostname()


def run_id() -> str:
    """The run this process belongs to: $MAGERL_RUN_ID, set by the launcher for its children."""
    value = os.environ.get(RUN_ID_ENV)
    if not value:
        value = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        os.environ[RUN_ID_ENV] = value
    return value


class JsonFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component
        self.pod = pod_name()
        self.run_id = run_id()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "component": getattr(record, "component", self.component),
            "event": record.getMessage(),
            "pod": self.pod,
            "run_id": self.run_id,
        }
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info and record.exc_info[0] is not None:
            entry.setdefault("error_type", record.exc_info[0].__name__)
            entry.setdefault("error", str(record.exc_info[1]))
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(component: str, level: str | int = "INFO", stream: TextIO | None = None) -> None:
    """Route all logging of this process to JSON lines on stdout."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter(component))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class EventLog:
    """Structured events of one component; `error` logs and counts in one call."""

    def __init__(self, component: str, metrics: Metrics | None = None) -> None:
        self.component = component
        self.metrics = metrics
        self._log = logging.getLogger(f"magerl.{component}")

    def _emit(self, level: int, event: str, fields: dict[str, Any]) -> None:
        self._log.log(level, event, extra={"fields": fields, "component": self.component})

    def info(self, event: str, **fields: Any) -> None:
        self._emit(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(logging.WARNING, event, fields)

    def error(self, event: str, *, kind: str, exc: BaseException | None = None, component: str | None = None, **fields: Any) -> None:
        """Log an error event and count it in mage_errors_total{component, kind}."""
        component = component or self.component
        if exc is not None:
            fields = {"error_type": type(exc).__name__, "error": str(exc), **fields}
        self._log.log(logging.ERROR, event, extra={"fields": {"kind": kind, **fields}, "component": component})
        if self.metrics is not None:
            self.metrics.record_error(component, kind)
