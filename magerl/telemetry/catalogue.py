"""The metric catalogue: the one list of every metric magerl exports.

The exporter builds its metrics from it, `docs/metrics.md` is generated from it, and the
dashboard and alert tests read it. Names are the monitoring guide's; where the guide
names a JVM metric, the Python equivalent is given. Every label has a bounded, documented
set of values, enforced when a value is recorded.

Regenerate the docs with `python -m magerl.telemetry > docs/metrics.md`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "gauge", "histogram"]
Role = Literal["worker", "learner", "evaluator"]
ROLES: tuple[Role, ...] = ("worker", "learner", "evaluator")

#: Components that count errors, and the kinds each may report ("other" is always allowed).
#: PythonBridgeErrors alerts on the bridge components: engine (calls into the Rust engine)
#: and transport (worker <-> learner messages).
ERROR_KINDS: dict[str, tuple[str, ...]] = {
    "engine": ("panic", "rejected_action", "no_legal_action", "other"),
    "transport": ("malformed", "oversized", "schema_version", "other"),
    "checkpoint": ("write_failed", "corrupt", "other"),
    "learner": ("non_finite_loss", "other"),
    "worker": ("runner_died", "other"),
    "telemetry": ("collector_failed", "other"),
}
BRIDGE_COMPONENTS = ("engine", "transport")

ABORT_REASONS = ("max_turns", "max_prompts", "engine_error")
DROP_REASONS = ("queue_full", "stale_policy")  # malformed episodes count as transport errors
QUEUES = ("worker_outbox", "learner_inbox")
OPPONENTS = ("random", "engine:veryeasy", "engine:easy", "engine:medium", "engine:hard", "engine:veryhard")
MAX_RUNNERS = 256
MAX_GPUS = 16

#: What each label may hold (documented in docs/metrics.md).
LABEL_VALUES: dict[str, str] = {
    "runner": f"game-runner index 0..NUM_GAME_RUNNERS-1 (at most {MAX_RUNNERS})",
    "component": ", ".join(ERROR_KINDS),
    "kind": "per component: " + "; ".join(f"{c}: {', '.join(k)}" for c, k in ERROR_KINDS.items()),
    "reason": f"aborted: {', '.join(ABORT_REASONS)}; dropped: {', '.join(DROP_REASONS)}",
    "queue": ", ".join(QUEUES),
    "opponent": ", ".join(OPPONENTS),
    "gpu": f"CUDA device index 0..{MAX_GPUS - 1}",
    "version": "magerl version (one per build)",
    "engine_version": "phase-python version (one per build)",
    "role": ", ".join(ROLES),
}

EPISODE_SECONDS_BUCKETS = (0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)
EPISODE_TURNS_BUCKETS = (4, 6, 8, 10, 12, 15, 20, 25, 30, 40, 60)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Kind
    help: str
    roles: tuple[Role, ...]
    labels: tuple[str, ...] = ()
    unit: str = ""
    #: How gauges from several processes of one pod combine (prometheus_client multiprocess mode).
    multiprocess_mode: str = "mostrecent"
    buckets: tuple[float, ...] = ()


W, L, E = ("worker",), ("learner",), ("evaluator",)

CATALOGUE: tuple[MetricSpec, ...] = (
    # -- the guide's worker metrics --------------------------------------------------
    MetricSpec("mage_episodes_completed_total", "counter", "Episodes finished by this worker pod.", W),
    MetricSpec("mage_worker_episodes_total", "counter", "Episodes finished, per game runner of this worker pod.", W, ("runner",)),
    MetricSpec(
        "mage_worker_memory_used_bytes", "gauge",
        "Resident memory of the worker pod's process tree (the Python equivalent of the guide's mage_jvm_memory_used_bytes).",
        W, unit="bytes",
    ),
    MetricSpec("mage_errors_total", "counter", "Errors by component and bounded kind.", ("worker", "learner", "evaluator"), ("component", "kind")),
    # -- the guide's learner metrics -------------------------------------------------
    MetricSpec("mage_training_loss", "gauge", "Total loss of the latest optimizer update.", L),
    MetricSpec("mage_optimal_batch_size", "gauge", "Largest batch that fits the memory budget, measured (capped by MAX_SAMPLES_PER_BATCH).", L),
    MetricSpec("mage_current_batch_size", "gauge", "Samples in the latest optimizer update.", L),
    MetricSpec("mage_samples_processed_total", "counter", "Training samples consumed by the learner.", L),
    MetricSpec("mage_gpu_memory_used_bytes", "gauge", "GPU memory in use (NVML; torch fallback). Absent without a GPU.", L, ("gpu",), "bytes"),
    MetricSpec("mage_gpu_memory_total_bytes", "gauge", "GPU memory capacity (NVML; torch fallback). Absent without a GPU.", L, ("gpu",), "bytes"),
    MetricSpec("mage_training_updates_total", "counter", "Optimizer updates (neural network update count).", L),
    MetricSpec("mage_win_rate", "gauge", "Win rate (0..1) of the latest evaluation against a fixed opponent.", E, ("opponent",)),
    MetricSpec("mage_checkpoints_saved_total", "counter", "Checkpoints written successfully.", L),
    # -- what operators need beyond the guide ----------------------------------------
    MetricSpec(
        "mage_policy_version", "gauge",
        "Policy version in use: the newest among a worker pod's live runners; the learner's latest published.",
        ("worker", "learner"), multiprocess_mode="livemax",
    ),
    MetricSpec("mage_policy_lag_versions", "gauge", "Mean versions between the learner's policy and the policies that generated the latest batch.", L),
    MetricSpec("mage_decisions_total", "counter", "Decisions taken by the learning policy in games.", W),
    MetricSpec("mage_episode_duration_seconds", "histogram", "Wall time of finished episodes.", W, unit="seconds", buckets=EPISODE_SECONDS_BUCKETS),
    MetricSpec("mage_episode_turns", "histogram", "Game turns of finished episodes.", W, buckets=EPISODE_TURNS_BUCKETS),
    MetricSpec("mage_episodes_aborted_total", "counter", "Episodes abandoned, by reason (length caps, engine errors).", W, ("reason",)),
    MetricSpec("mage_episodes_dropped_total", "counter", "Episodes discarded before training, by reason.", ("worker", "learner"), ("reason",)),
    MetricSpec("mage_worker_game_runners", "gauge", "Live game-runner processes in this worker pod (the guide's thread count).", W),
    MetricSpec("mage_queue_depth", "gauge", "Items waiting in a bounded queue.", ("worker", "learner"), ("queue",)),
    MetricSpec("mage_last_checkpoint_timestamp_seconds", "gauge", "Unix time of the last successful checkpoint write.", L, unit="seconds"),
    MetricSpec("mage_learner_memory_used_bytes", "gauge", "Resident memory of the learner pod's process tree.", L, unit="bytes"),
    MetricSpec("mage_evaluator_memory_used_bytes", "gauge", "Resident memory of the evaluator's process tree.", E, unit="bytes"),
    MetricSpec("mage_evaluation_games_total", "counter", "Evaluation games played, per fixed opponent.", E, ("opponent",)),
    MetricSpec("mage_build_info", "gauge", "Build information; always 1.", ROLES, ("version", "engine_version", "role"), multiprocess_mode="max"),
)

BY_NAME = {spec.name: spec for spec in CATALOGUE}
MEMORY_METRIC: dict[str, str] = {
    "worker": "mage_worker_memory_used_bytes",
    "learner": "mage_learner_memory_used_bytes",
    "evaluator": "mage_evaluator_memory_used_bytes",
}


def render_markdown() -> str:
    """docs/metrics.md, generated: a test fails when the committed file is stale."""
    lines = [
        "# Metrics",
        "",
        "Generated from `magerl/telemetry/catalogue.py` by",
        "`python -m magerl.telemetry > docs/metrics.md`; do not edit by hand.",
        "",
        "Every process tree serves these on `:9090/metrics` (`METRICS_PORT`; 0 picks a free port",
        "and logs it), with `/healthz` (alive) and `/readyz` (doing its job). A worker pod's game",
        "runners aggregate into their pod's endpoint.",
        "",
        "| metric | type | unit | labels | set by | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for s in CATALOGUE:
        labels = ", ".join(f"`{label}`" for label in s.labels) or "-"
        lines.append(f"| `{s.name}` | {s.kind} | {s.unit or '-'} | {labels} | {', '.join(s.roles)} | {s.help} |")
    lines += ["", "## Label values", "", "| label | values |", "|---|---|"]
    used = {label for s in CATALOGUE for label in s.labels}
    lines += [f"| `{label}` | {LABEL_VALUES[label]} |" for label in LABEL_VALUES if label in used]
    lines += [
        "",
        "## Also exported",
        "",
        "- `process_*` and `python_*`: the standard prometheus_client collectors, for the pod's",
        "  main process.",
        "- System metrics the guide names come from the cluster: `container_*` (cAdvisor),",
        "  `kube_pod_container_status_restarts_total` (kube-state-metrics), and",
        "  `nvidia_gpu_memory_{used,total}_bytes`, recorded from the DCGM exporter's",
        "  `DCGM_FI_DEV_FB_USED` / `DCGM_FI_DEV_FB_FREE` (MiB).",
        "",
    ]
    return "\n".join(lines)
