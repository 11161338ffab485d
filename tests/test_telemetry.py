"""Telemetry: every catalogue metric is exported for real, aggregated across a pod's processes."""

from __future__ import annotations

import io
import json
import multiprocessing
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import require_tool
from magerl import telemetry
from magerl.telemetry import collectors
from magerl.telemetry.catalogue import CATALOGUE, render_markdown
from magerl.telemetry.exporter import metrics_port
from magerl.telemetry.logs import EventLog, JsonFormatter, configure_logging
from magerl.telemetry.metrics import MULTIPROC_ENV, Metrics

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def pod(tmp_path, monkeypatch):
    """A pod root process with its own metrics directory, serving on a free loopback port."""
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path / "metrics"))
    monkeypatch.setattr(collectors, "nvml_reader", lambda: None)
    monkeypatch.setattr(collectors, "torch_reader", lambda: None)
    tm = telemetry.start("learner", port=0, addr="127.0.0.1", sample_interval=3600)
    yield tm
    tm.close()


def get(tm, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{tm.port}{path}", timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def scrape(tm) -> dict:
    status, body = get(tm, "/metrics")
    assert status == 200
    return {family.name: family for family in text_string_to_metric_families(body)}


def value(families, name: str, **labels) -> float:
    for family in families.values():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise KeyError(f"{name}{labels}")


# -- child processes of the pod (spawned, like a worker's game runners) ---------------
def runner_process(runner: int, ready, go) -> None:
    m = telemetry.attach("worker")
    for i in range(runner + 1):
        m.record_episode_completed(runner, seconds=1.5 + i, turns=10 + i, decisions=100)
    m.record_episode_aborted("engine_error")
    EventLog("worker", m).error("engine_call_failed", kind="panic", component="engine", exc=RuntimeError("x"))
    m.record_episode_dropped("queue_full", 2)
    m.set_policy_version(9 + runner)
    m.set_game_runners(2)
    m.set_queue_depth("worker_outbox", 4)
    m.set_memory_used(123_000_000)
    ready.set()
    go.wait(60)


def evaluator_process(ready, go) -> None:
    m = telemetry.attach("evaluator")
    m.set_win_rate("engine:easy", 0.625, games=16)
    m.set_memory_used(45_000_000)
    m.record_error("telemetry", "collector_failed")
    ready.set()
    go.wait(60)


def test_every_catalogue_metric_is_exported_with_its_type_labels_and_value(pod) -> None:
    m = pod.metrics
    m.record_training_batch(256, 1.5)
    m.record_training_batch(512, 1.25)
    m.set_optimal_batch_size(4096)
    m.record_gpu_memory(2_000_000_000, 8_000_000_000, gpu=0)
    m.record_checkpoint_saved(timestamp=1_700_000_000)
    m.record_checkpoint_failed()
    m.set_policy_version(7)
    m.set_policy_lag(1.5)
    m.set_queue_depth("learner_inbox", 3)
    m.record_episode_dropped("stale_policy")

    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    children, flags = [], []
    for target, args in [(runner_process, (0,)), (runner_process, (1,)), (evaluator_process, ())]:
        ready = ctx.Event()
        proc = ctx.Process(target=target, args=(*args, ready, go))
        proc.start()
        children.append(proc)
        flags.append(ready)
    try:
        assert all(flag.wait(120) for flag in flags)
        families = scrape(pod)
        for spec in CATALOGUE:
            base = spec.name[: -len("_total")] if spec.kind == "counter" else spec.name
            assert base in families, f"{spec.name} missing from /metrics"
            family = families[base]
            assert family.type == spec.kind, spec.name
            for sample in family.samples:
                if not sample.name.endswith("_bucket"):
                    assert set(sample.labels) == set(spec.labels), (spec.name, sample.labels)
        # values: aggregated over the pod's processes
        assert value(families, "mage_episodes_completed_total") == 3
        assert value(families, "mage_worker_episodes_total", runner="0") == 1
        assert value(families, "mage_worker_episodes_total", runner="1") == 2
        assert value(families, "mage_decisions_total") == 300
        assert value(families, "mage_episode_duration_seconds_count") == 3
        assert value(families, "mage_episode_duration_seconds_sum") == 1.5 + 1.5 + 2.5
        assert value(families, "mage_episode_turns_bucket", le="10.0") == 2
        assert value(families, "mage_episodes_aborted_total", reason="engine_error") == 2
        assert value(families, "mage_episodes_dropped_total", reason="queue_full") == 4
        assert value(families, "mage_episodes_dropped_total", reason="stale_policy") == 1
        assert value(families, "mage_errors_total", component="engine", kind="panic") == 2
        assert value(families, "mage_errors_total", component="checkpoint", kind="write_failed") == 1
        assert value(families, "mage_errors_total", component="telemetry", kind="collector_failed") == 1
        assert value(families, "mage_training_loss") == 1.25
        assert value(families, "mage_current_batch_size") == 512
        assert value(families, "mage_samples_processed_total") == 768
        assert value(families, "mage_training_updates_total") == 2
        assert value(families, "mage_optimal_batch_size") == 4096
        assert value(families, "mage_gpu_memory_used_bytes", gpu="0") == 2e9
        assert value(families, "mage_gpu_memory_total_bytes", gpu="0") == 8e9
        assert value(families, "mage_checkpoints_saved_total") == 1
        assert value(families, "mage_last_checkpoint_timestamp_seconds") == 1_700_000_000
        assert value(families, "mage_win_rate", opponent="engine:easy") == 0.625
        assert value(families, "mage_evaluation_games_total", opponent="engine:easy") == 16
        assert value(families, "mage_policy_version") == 10  # newest policy among live processes
        assert value(families, "mage_policy_lag_versions") == 1.5
        assert value(families, "mage_worker_game_runners") == 2
        assert value(families, "mage_queue_depth", queue="worker_outbox") == 4
        assert value(families, "mage_queue_depth", queue="learner_inbox") == 3
        assert value(families, "mage_worker_memory_used_bytes") == 123_000_000
        assert value(families, "mage_evaluator_memory_used_bytes") == 45_000_000
        assert value(families, "mage_learner_memory_used_bytes") > 10_000_000  # sampled for real
        assert value(families, "mage_build_info", role="worker") == 1
        assert "process_resident_memory_bytes" in families and "python_gc_objects_collected" in families
    finally:
        go.set()
        for proc in children:
            proc.join(60)
    for proc in children:
        telemetry.process_exited(proc.pid)
    families = scrape(pod)
    assert value(families, "mage_policy_version") == 7  # exited runners no longer count
    assert value(families, "mage_episodes_completed_total") == 3  # counters survive their process


def test_promtool_accepts_the_exposition(pod, tmp_path) -> None:
    promtool = require_tool("promtool")
    pod.metrics.record_training_batch(64, 0.5)
    pod.metrics.record_gpu_memory(1, 2)
    pod.metrics.record_error("transport", "malformed")
    _, body = get(pod, "/metrics")
    proc = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "" and proc.stderr.strip() == "", proc.stdout + proc.stderr


def test_health_readiness_and_unknown_paths(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path / "m"))
    state = {"ready": False}
    tm = telemetry.start("worker", port=0, addr="127.0.0.1", ready=lambda: state["ready"], sample_interval=3600)
    try:
        assert get(tm, "/healthz") == (200, "ok\n")
        assert get(tm, "/readyz")[0] == 503
        state["ready"] = True
        assert get(tm, "/readyz")[0] == 200
        assert get(tm, "/nope")[0] == 404
    finally:
        tm.close()


def test_gpu_metrics_absent_without_gpu_and_set_from_nvml(pod, monkeypatch) -> None:
    families = scrape(pod)
    assert "mage_gpu_memory_used_bytes" not in families  # never a misleading zero
    sampler = collectors.Sampler(pod.metrics, gpu=False)
    sampler._gpu = lambda: [(0, 3_000, 10_000), (1, 5_000, 10_000)]  # what the NVML reader returns
    sampler.sample()
    families = scrape(pod)
    assert value(families, "mage_gpu_memory_used_bytes", gpu="1") == 5_000
    assert value(families, "mage_gpu_memory_total_bytes", gpu="0") == 10_000


def test_labels_are_bounded(pod) -> None:
    m = pod.metrics
    with pytest.raises(ValueError):
        m.record_error("nonsense", "panic")
    m.record_error("engine", "some new failure")  # counted, under "other"
    assert value(scrape(pod), "mage_errors_total", component="engine", kind="other") == 1
    with pytest.raises(ValueError):
        m.set_queue_depth("elsewhere", 1)
    with pytest.raises(ValueError):
        m.record_gpu_memory(1, 2, gpu=99)
    with pytest.raises(LookupError, match="not exported by the learner role"):
        m.record_episode_completed(0, seconds=1, turns=1, decisions=1)


def test_json_log_lines_and_errors_counted(pod) -> None:
    stream = io.StringIO()
    configure_logging("learner", stream=stream)
    log = EventLog("learner", pod.metrics)
    log.info("update_done", update=3, loss=0.5)
    try:
        raise OSError("disk full")
    except OSError as exc:
        log.error("checkpoint_failed", kind="write_failed", component="checkpoint", exc=exc, path="/ckpt")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["level"], e["event"], e["component"]) for e in lines] == [
        ("info", "update_done", "learner"),
        ("error", "checkpoint_failed", "checkpoint"),
    ]
    for entry in lines:
        assert {"ts", "level", "component", "event", "pod", "run_id"} <= set(entry)
        assert entry["ts"].endswith("Z")
    assert lines[0]["update"] == 3 and lines[1]["error_type"] == "OSError" and lines[1]["path"] == "/ckpt"
    assert value(scrape(pod), "mage_errors_total", component="checkpoint", kind="write_failed") == 1
    assert isinstance(JsonFormatter("x").run_id, str)


def test_metrics_port_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("METRICS_PORT", "9191")
    assert metrics_port() == 9191
    monkeypatch.delenv("METRICS_PORT")
    assert metrics_port() == 9090
    monkeypatch.setenv("METRICS_PORT", "http")
    with pytest.raises(ValueError):
        metrics_port()


def test_metrics_need_a_directory(monkeypatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with pytest.raises(RuntimeError, match=MULTIPROC_ENV):
        Metrics("worker")


def test_metrics_doc_is_current() -> None:
    committed = (ROOT / "docs" / "metrics.md").read_text()
    assert committed == render_markdown(), "docs/metrics.md is stale: python -m magerl.telemetry > docs/metrics.md"
