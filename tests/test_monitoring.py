"""The monitoring stack's sources, each checked by the program that runs it."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

from conftest import require_tool
from magerl.telemetry.catalogue import BY_NAME

ROOT = Path(__file__).resolve().parents[1]
PROM = ROOT / "deploy" / "prometheus"
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
RULES = PROM / "mage_rules.yml"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, cwd=cwd)


def test_rules_are_valid_and_unit_tests_pass() -> None:
    promtool = require_tool("promtool")
    checked = run(promtool, "check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run(promtool, "test", "rules", str(PROM / "tests" / "mage_rules_test.yml"))
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def _alerts() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r]


def test_every_alert_is_complete_and_unit_tested() -> None:
    alerts = _alerts()
    guide = {"LowEpisodeGenerationRate", "HighGPUMemoryUsage", "TrainingLossDivergence", "FrequentPodRestarts",
             "PythonBridgeErrors", "CheckpointFailures"}
    assert guide <= {a["alert"] for a in alerts}
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    anchors = {"#" + m.lower() for m in re.findall(r"^## (\w+)", runbooks, re.M)}
    tests = yaml.safe_load((PROM / "tests" / "mage_rules_test.yml").read_text())["tests"]
    for alert in alerts:
        name = alert["alert"]
        assert alert["labels"]["severity"] in ("critical", "warning"), name
        assert {"summary", "description", "runbook_url"} <= set(alert["annotations"]), name
        assert alert["annotations"]["runbook_url"] == f"docs/runbooks.md#{name.lower()}"
        assert f"#{name.lower()}" in anchors, f"docs/runbooks.md has no section {name}"
        cases = [c for t in tests for c in t.get("alert_rule_test", []) if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in cases), f"{name}: no firing case"
        quiet = any(not c["exp_alerts"] for c in cases) or any(
            len({e["exp_labels"].get("pod") for e in c["exp_alerts"]}) < _series_pods(t, name)
            for t in tests for c in t.get("alert_rule_test", []) if c["alertname"] == name and c["exp_alerts"]
        )
        assert quiet, f"{name}: no case where it must stay quiet"


def _series_pods(test: dict, name: str) -> int:
    """Distinct pods/instances in a test's input: more than fire means some stayed quiet."""
    if not any(c["alertname"] == name for c in test.get("alert_rule_test", [])):
        return 0
    return len({re.search(r'(pod|instance)="([^"]+)"', s["series"]).group(2) for s in test["input_series"]
                if re.search(r'(pod|instance)="([^"]+)"', s["series"])})


def test_rules_use_only_real_metrics() -> None:
    exprs = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    text = "\n".join(exprs)
    used = set(re.findall(r"\b(mage_[a-z_]+)", text))
    assert used and used <= set(BY_NAME), f"not in the catalogue: {used - set(BY_NAME)}"
    assert "increase(mage_training_loss" not in text and "rate(mage_training_loss" not in text


def _swap_discovery(config: dict, replacement) -> dict:
    for job in config["scrape_configs"]:
        if "kubernetes_sd_configs" in job:
            del job["kubernetes_sd_configs"]
            job.update(replacement(job["job_name"]))
    return config


def test_kubernetes_config_is_valid(tmp_path) -> None:
    promtool = require_tool("promtool")
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    assert config["global"]["scrape_interval"] == "15s"
    config = _swap_discovery(config, lambda job: {"static_configs": [{"targets": ["placeholder:9090"]}]})
    config["rule_files"] = [str(RULES)]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    checked = run(promtool, "check", "config", "--syntax-only", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for name in ("federation.yml", "prometheus-local.yml"):
        checked = run(promtool, "check", "config", "--syntax-only", str(PROM / name))
        assert checked.returncode == 0, checked.stdout + checked.stderr


def _pod(address: str, app: str, *, scrape: str = "true", port: str = "9090", phase: str = "Running",
         path: str | None = None, name: str = "p") -> dict:
    labels = {
        "__meta_kubernetes_pod_label_app": app, "__meta_kubernetes_pod_annotation_prometheus_io_scrape": scrape,
        "__meta_kubernetes_pod_annotation_prometheus_io_port": port, "__meta_kubernetes_pod_phase": phase,
        "__meta_kubernetes_namespace": "mage", "__meta_kubernetes_pod_name": name,
        "__meta_kubernetes_pod_node_name": "node-1",
    }
    if path:
        labels["__meta_kubernetes_pod_annotation_prometheus_io_path"] = path
    return {"targets": [address], "labels": labels}


def test_pod_relabelling_keeps_mage_pods_only(tmp_path) -> None:
    promtool = require_tool("promtool")
    pods = [
        _pod("127.0.0.1:8080", "mage-worker", name="mage-worker-a"),
        _pod("127.0.0.2", "mage-learner", port="9191", path="/custom", name="mage-learner-0"),
        _pod("127.0.0.3:8080", "mage-evaluator", name="mage-evaluator-0"),
        _pod("127.0.0.4:8080", "mage-worker", scrape="false", name="opted-out"),
        _pod("127.0.0.5:8080", "grafana", name="not-ours"),
        _pod("127.0.0.6:8080", "mage-worker", phase="Pending", name="pending"),
    ]
    pods[0]["labels"]["__meta_kubernetes_pod_label_magerl_io_run"] = "run-7"
    (tmp_path / "pods.json").write_text(json.dumps(pods))
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    config = _swap_discovery(config, lambda job: {"file_sd_configs": [{"files": ["pods.json"]}]})
    config.pop("rule_files")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    out = run(promtool, "check", "service-discovery", "--timeout=1s", "prometheus.yml", "mage-pods", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    kept = {t["labels"]["pod"]: t["labels"] for t in json.loads(out.stdout) if t["labels"]}
    assert set(kept) == {"mage-worker-a", "mage-learner-0", "mage-evaluator-0"}
    assert kept["mage-worker-a"]["__address__"] == "127.0.0.1:9090"
    assert kept["mage-learner-0"]["__address__"] == "127.0.0.2:9191"
    assert kept["mage-learner-0"]["__metrics_path__"] == "/custom"
    assert kept["mage-worker-a"]["run"] == "run-7"
    assert {k["role"] for k in kept.values()} == {"worker", "learner", "evaluator"}
    assert all(k["namespace"] == "mage" and k["app"].startswith("mage-") for k in kept.values())


def test_alertmanager_config_and_routes() -> None:
    amtool = require_tool("amtool")
    checked = run(amtool, "check-config", str(ALERTMANAGER))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = yaml.safe_load(ALERTMANAGER.read_text())
    assert config["route"]["group_by"] == ["alertname", "cluster"]
    for labels, receiver in [
        (["severity=critical", "alertname=CheckpointFailures"], "team-pager"),
        (["severity=warning", "alertname=LowEpisodeGenerationRate"], "team-email"),
        (["alertname=Unlabelled"], "team-email"),
    ]:
        out = run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}", "--verify.receivers", receiver, *labels)
        assert out.returncode == 0, (labels, out.stdout, out.stderr)
    text = ALERTMANAGER.read_text()
    assert "_file:" in text and not re.search(r"(password|routing_key|api_url):\s*\S", text)


def _dashboard_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate", ROOT / "deploy" / "grafana" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboard_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, expr) of every query in the dashboard."""
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]


def test_dashboard_is_current_and_complete() -> None:
    generate = _dashboard_module()
    committed = generate.OUTPUT.read_text()
    assert committed == generate.render(), "stale dashboard: run python deploy/grafana/generate.py"
    dashboard = json.loads(committed)
    assert dashboard["title"] == "Mage AI Training"
    titles = {p["title"] for p in dashboard["panels"]}
    guide_views = {"Episode Generation Rate", "Training Loss Trends", "GPU Memory", "CPU per Pod", "Memory per Pod",
                   "Error Rate Analysis", "Throughput Table", "Win Rate", "Policy Versions and Lag", "Checkpoints",
                   "Batch Size: Optimal vs Current"}
    assert guide_views <= titles
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource", "cluster", "namespace", "run"]
    external = {"container_cpu_usage_seconds_total", "container_memory_usage_bytes", "process_cpu_seconds_total",
                "kube_pod_container_status_restarts_total", "nvidia_gpu_memory_used_bytes", "nvidia_gpu_memory_total_bytes"}
    for title, expr in dashboard_queries(dashboard):
        names = set(re.findall(r"\b((?:mage|container|process|kube|nvidia)_[a-z_]+)\b", expr))
        names = {n for n in names if not n.startswith("mage_(")}
        assert names and names <= set(BY_NAME) | external, (title, names - set(BY_NAME) - external)


def test_grafana_provisioning_layout() -> None:
    base = ROOT / "deploy" / "grafana" / "provisioning"
    datasources = yaml.safe_load((base / "datasources" / "prometheus.yml").read_text())
    assert datasources["apiVersion"] == 1 and datasources["datasources"][0]["type"] == "prometheus"
    providers = yaml.safe_load((base / "dashboards" / "magerl.yml").read_text())
    assert providers["apiVersion"] == 1 and providers["providers"][0]["type"] == "file"
    assert providers["providers"][0]["options"]["path"].startswith("/var/lib/grafana/dashboards")


def _tsc_check(tmp_path: Path, dashboard_json: str) -> subprocess.CompletedProcess:
    tsc = ROOT / ".cache" / "ts" / "node_modules" / ".bin" / "tsc"
    if not tsc.exists():
        require_tool("tsc (npm install --prefix .cache/ts @grafana/schema@11.6.0 typescript@5)")
    source = tmp_path / "check.ts"
    source.write_text("import type { Dashboard } from '@grafana/schema';\n"
                      f"export const dashboard = ({dashboard_json}) satisfies Dashboard;\n")
    (tmp_path / "node_modules").symlink_to(ROOT / ".cache" / "ts" / "node_modules")
    return run(str(tsc), "--noEmit", "--strict", "--skipLibCheck", "--moduleResolution", "node", "--target", "es2020",
               str(source), cwd=tmp_path)


def test_dashboard_satisfies_grafana_schema(tmp_path) -> None:
    text = (ROOT / "deploy" / "grafana" / "dashboards" / "mage-ai-training.json").read_text()
    checked = _tsc_check(tmp_path, text)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    assert _tsc_check(broken, text.replace('"graphTooltip": 0', '"graphTooltip": "sometimes"')).returncode != 0
