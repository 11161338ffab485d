"""The instrumentation API: the guide's `recordEpisodeCompleted`, `recordTrainingBatch`,
`recordGpuMemory` and the rest, in Python.

A pod is a process tree (a worker runs NUM_GAME_RUNNERS runner processes) behind one
`/metrics`. We use prometheus_client's multiprocess mode: every process writes its values
to memory-mapped files in the pod's PROMETHEUS_MULTIPROC_DIR and the pod's root process
merges them at scrape time. Its documented caveats, and how they are handled here:
- the directory must be empty at pod start: `prepare_multiprocess_dir` wipes or creates it;
- gauges need a merge mode per metric: the catalogue declares one;
- `live*` gauges need `mark_process_dead(pid)` when a process exits: `process_exited`;
- metrics must not be registered in the registry that scrapes: they are built with
  `registry=None` and only the collector reads them;
- the mode is chosen when prometheus_client creates a value: `Metrics` switches the value
  class when the directory is set after import.
Calls are thread-safe (prometheus_client locks each value).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, multiprocess, values

from magerl.telemetry.catalogue import (
    ABORT_REASONS,
    BY_NAME,
    CATALOGUE,
    DROP_REASONS,
    ERROR_KINDS,
    MAX_GPUS,
    MAX_RUNNERS,
    MEMORY_METRIC,
    OPPONENTS,
    QUEUES,
    ROLES,
    MetricSpec,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir() -> tuple[Path, bool]:
    """Give this pod an empty metrics directory (call once, in the pod's root process).

    Uses $PROMETHEUS_MULTIPROC_DIR when set (e.g. an emptyDir volume) after removing
    files left by an earlier run; otherwise creates a private temporary directory, which
    the caller owns (the second value). Child processes inherit the variable.
    """
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return path, False
    path = Path(tempfile.mkdtemp(prefix="magerl-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    return path, True


def remove_multiprocess_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _build(spec: MetricSpec) -> Any:
    common: dict[str, Any] = {"labelnames": spec.labels, "registry": None}
    if spec.kind == "counter":
        return Counter(spec.name, spec.help, **common)
    if spec.kind == "gauge":
        return Gauge(spec.name, spec.help, multiprocess_mode=spec.multiprocess_mode, **common)
    return Histogram(spec.name, spec.help, buckets=spec.buckets, **common)


def _check(label: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{label}={value!r} is not one of {', '.join(allowed)}")
    return value


def _index(label: str, value: int, limit: int) -> str:
    if not isinstance(value, int) or not 0 <= value < limit:
        raise ValueError(f"{label}={value!r} must be an integer in 0..{limit - 1}")
    return str(value)


class _ByName(dict):
    def __init__(self, role: str, *args: Any) -> None:
        super().__init__(*args)
        self.role = role

    def __missing__(self, name: str) -> Any:
        raise LookupError(f"metric {name} is not exported by the {self.role} role (see the catalogue)")


_value_dir: str | None = None


class Metrics:
    """The metrics one process of a pod sets: those the catalogue gives its role.

    Build one per process (two objects writing the same metric in one process would
    overwrite each other's values in the shared file).
    """

    def __init__(self, role: str, *, extra_roles: tuple[str, ...] = ()) -> None:
        global _value_dir
        for r in (role, *extra_roles):
            if r not in ROLES:
                raise ValueError(f"unknown role {r!r} (one of {', '.join(ROLES)})")
        directory = os.environ.get(MULTIPROC_ENV)
        if not directory:
            raise RuntimeError(f"{MULTIPROC_ENV} is not set: call prepare_multiprocess_dir() in the pod's root process")
        if _value_dir != directory:
            # prometheus_client picks its value class at import; pick it again for this directory.
            values.ValueClass = values.MultiProcessValue()
            _value_dir = directory
        self.role = role
        wanted = {role, *extra_roles}
        self._m = _ByName(role, {s.name: _build(s) for s in CATALOGUE if wanted.intersection(s.roles)})
        self._zero_counters()
        version = metadata.version("magerl")
        engine = metadata.version("phase-python")
        self._m["mage_build_info"].labels(version, engine, role).set(1)

    def _zero_counters(self) -> None:
        """Create every bounded label set of the counters at 0, so that rates and alerts see
        a series before its first event (Prometheus' advice for labelled counters)."""
        label_sets = {
            "mage_errors_total": [(c, k) for c, kinds in ERROR_KINDS.items() for k in kinds],
            "mage_episodes_aborted_total": [(r,) for r in ABORT_REASONS],
            "mage_episodes_dropped_total": [(r,) for r in DROP_REASONS],
            "mage_evaluation_games_total": [(o,) for o in OPPONENTS],
        }
        for name, sets in label_sets.items():
            if name in self._m:
                for values in sets:
                    self._m[name].labels(*values)

    def metric(self, name: str) -> Any:
        """The prometheus_client object behind a catalogue metric (for tests and collectors)."""
        return self._m[BY_NAME[name].name]

    # -- worker -----------------------------------------------------------------------
    def record_episode_completed(self, runner: int, *, seconds: float, turns: int, decisions: int) -> None:
        """One finished episode of game runner `runner`, with its length and policy decisions."""
        runner_label = _index("runner", runner, MAX_RUNNERS)
        self._m["mage_episodes_completed_total"].inc()
        self._m["mage_worker_episodes_total"].labels(runner_label).inc()
        self._m["mage_episode_duration_seconds"].observe(seconds)
        self._m["mage_episode_turns"].observe(turns)
        self._m["mage_decisions_total"].inc(decisions)

    def record_episode_aborted(self, reason: str) -> None:
        self._m["mage_episodes_aborted_total"].labels(_check("reason", reason, ABORT_REASONS)).inc()

    def record_episode_dropped(self, reason: str, count: int = 1) -> None:
        self._m["mage_episodes_dropped_total"].labels(_check("reason", reason, DROP_REASONS)).inc(count)

    def set_game_runners(self, live: int) -> None:
        self._m["mage_worker_game_runners"].set(live)

    # -- learner ----------------------------------------------------------------------
    def record_training_batch(self, batch_size: int, loss: float) -> None:
        """One optimizer update on `batch_size` samples whose total loss was `loss`."""
        self._m["mage_current_batch_size"].set(batch_size)
        self._m["mage_training_loss"].set(loss)
        self._m["mage_samples_processed_total"].inc(batch_size)
        self._m["mage_training_updates_total"].inc()

    def set_optimal_batch_size(self, samples: int) -> None:
        self._m["mage_optimal_batch_size"].set(samples)

    def record_gpu_memory(self, used: float, total: float, gpu: int = 0) -> None:
        label = _index("gpu", gpu, MAX_GPUS)
        self._m["mage_gpu_memory_used_bytes"].labels(label).set(used)
        self._m["mage_gpu_memory_total_bytes"].labels(label).set(total)

    def record_checkpoint_saved(self, timestamp: float | None = None) -> None:
        self._m["mage_checkpoints_saved_total"].inc()
        self._m["mage_last_checkpoint_timestamp_seconds"].set(time.time() if timestamp is None else timestamp)

    def record_checkpoint_failed(self, kind: str = "write_failed") -> None:
        self.record_error("checkpoint", kind)

    def set_policy_lag(self, versions: float) -> None:
        self._m["mage_policy_lag_versions"].set(versions)

    # -- evaluator --------------------------------------------------------------------
    def set_win_rate(self, opponent: str, value: float, games: int = 0) -> None:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"win rate must be within 0..1, got {value}")
        label = _check("opponent", opponent, OPPONENTS)
        self._m["mage_win_rate"].labels(label).set(value)
        if games:
            self._m["mage_evaluation_games_total"].labels(label).inc(games)

    # -- every role -------------------------------------------------------------------
    def record_error(self, component: str, kind: str) -> None:
        """Count one error. Unknown kinds are counted as "other" so the label set stays bounded."""
        kinds = ERROR_KINDS.get(component)
        if kinds is None:
            raise ValueError(f"component={component!r} is not one of {', '.join(ERROR_KINDS)}")
        self._m["mage_errors_total"].labels(component, kind if kind in kinds else "other").inc()

    def set_policy_version(self, version: int) -> None:
        self._m["mage_policy_version"].set(version)

    def set_queue_depth(self, queue: str, depth: int) -> None:
        self._m["mage_queue_depth"].labels(_check("queue", queue, QUEUES)).set(depth)

    def set_memory_used(self, rss_bytes: float) -> None:
        """Resident memory of this pod's process tree, under the role's metric name."""
        self._m[MEMORY_METRIC[self.role]].set(rss_bytes)


def process_exited(pid: int) -> None:
    """Bookkeeping when a process of the pod exits: its live gauges stop counting."""
    multiprocess.mark_process_dead(pid)
