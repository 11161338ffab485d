"""Telemetry: the guide's metrics, the pod's /metrics endpoint, JSON logs.

In a pod's root process::

    tm = telemetry.start("learner")             # metrics dir, JSON logs, :9090, samplers
    tm.metrics.record_training_batch(512, 1.73)
    tm.log.error("checkpoint_failed", kind="write_failed", exc=err, component="checkpoint")

In a child process of the pod (a worker's game runner)::

    metrics = telemetry.attach("worker")
    metrics.record_episode_completed(runner=3, seconds=2.1, turns=14, decisions=160)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from magerl.telemetry.collectors import Sampler
from magerl.telemetry.exporter import Exporter, metrics_port
from magerl.telemetry.logs import EventLog, configure_logging
from magerl.telemetry.metrics import Metrics, prepare_multiprocess_dir, process_exited, remove_multiprocess_dir

__all__ = ["Telemetry", "Metrics", "EventLog", "start", "attach", "process_exited"]


@dataclass
class Telemetry:
    """What `start` set up for a pod's root process."""

    role: str
    metrics: Metrics
    log: EventLog
    exporter: Exporter
    sampler: Sampler
    directory: Path
    owns_directory: bool

    @property
    def port(self) -> int:
        return self.exporter.port

    def close(self) -> None:
        self.sampler.stop()
        self.exporter.stop()
        if self.owns_directory:
            remove_multiprocess_dir(self.directory)


def start(
    role: str,
    *,
    port: int | None = None,
    addr: str = "0.0.0.0",
    ready: Callable[[], bool] = lambda: True,
    sample_interval: float = 5.0,
    log_level: str = "INFO",
) -> Telemetry:
    """Set up telemetry for a pod's root process (call once, before starting children).

    `port` defaults to $METRICS_PORT, else 9090; 0 picks a free port, which is logged.
    """
    directory, owns = prepare_multiprocess_dir()
    configure_logging(role, log_level)
    metrics = Metrics(role)
    log = EventLog(role, metrics)
    exporter = Exporter(str(directory), port=metrics_port() if port is None else port, addr=addr, ready=ready).start()
    sampler = Sampler(metrics, sample_interval, gpu=role == "learner")
    sampler.sample()
    sampler.start()
    log.info("metrics_listening", addr=addr, port=exporter.port, path="/metrics")
    return Telemetry(role, metrics, log, exporter, sampler, directory, owns)


def attach(role: str, log_level: str = "INFO") -> Metrics:
    """Metrics and JSON logs for a child process of a pod whose root called `start`."""
    configure_logging(role, log_level)
    return Metrics(role)
