"""The live stack: a short `magerl train` watched by a real Prometheus (our local config
and rules), a real Alertmanager notifying a webhook, a second Prometheus federating the
first, and a real Fluent Bit parsing a log the run wrote. All on loopback.

Test-only changes to the shipped configs: 1 s scrape and evaluation intervals, and a
LowEpisodeGenerationRate over 20 s with `for: 5s` instead of 5 min / 10 min.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml
import zmq

from conftest import fluent_bit_binary, require_tool, wait_until
from magerl.telemetry.catalogue import CATALOGUE
from magerl.train import free_port
from test_fluent_bit import run_fluent_bit
from test_monitoring import dashboard_queries

ROOT = Path(__file__).resolve().parents[1]
PROM = ROOT / "deploy" / "prometheus"
pytestmark = pytest.mark.slow

# Metrics that cannot appear here, and why.
NO_GPU = {"mage_gpu_memory_used_bytes", "mage_gpu_memory_total_bytes"}  # CI has no GPU
GPU_PANELS = {"GPU Memory", "GPU Memory per Node"}




def query(port: int, expr: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]["result"]


def events(log: Path, name: str) -> list[dict]:
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == name:
            out.append(entry)
    return out


class Webhook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Webhook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)


def test_live_stack(tmp_path) -> None:
    prometheus = require_tool("prometheus")
    alertmanager = require_tool("prometheus-alertmanager")
    fluent_bit_binary()  # fail or skip early when Fluent Bit is missing
    procs: list[subprocess.Popen] = []
    webhook = HTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=webhook.serve_forever, daemon=True).start()
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    try:
        # 1. a short training run
        train = start([sys.executable, "-m", "magerl.cli", "train", "--run-dir", str(run_dir), "--runners", "1",
                       "--hours", "0.2", "--max-samples-per-batch", "64", "--checkpoint-every", "1", "--eval-every", "1",
                       "--eval-games", "2", "--eval-opponent", "random", "--d-model", "16", "--layers", "1",
                       "--heads", "2"], tmp_path / "train.log")
        procs.append(train)
        targets = run_dir / "prometheus-targets.json"
        wait_until("training processes up", targets.exists)
        learner_log = run_dir / "logs" / "learner.log"
        wait_until("an update and a checkpoint", lambda: events(learner_log, "checkpoint_saved"))
        wait_until("an evaluation", lambda: events(run_dir / "logs" / "evaluator.log", "evaluation"))
        ready = events(learner_log, "learner_ready")[0]
        assert ready["threads"] == max(1, (os.cpu_count() or 1) - 1)  # the cores the one runner leaves
        episodes_port = ready["episodes_port"]
        ctx = zmq.Context()
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 2000)
        push.connect(f"tcp://127.0.0.1:{episodes_port}")
        push.send(b"not an episode")  # a transport error, so the error panels have data
        push.close()
        ctx.term()

        # 2. Alertmanager with the shipped routing, receivers pointed at a local webhook
        am_port = free_port()
        am_config = yaml.safe_load((ROOT / "deploy" / "alertmanager" / "alertmanager.yml").read_text())
        am_config["global"] = {"resolve_timeout": "5m"}
        am_config["route"].update(group_wait="1s", group_interval="1s")
        hook = {"url": f"http://127.0.0.1:{webhook.server_port}/", "send_resolved": False}
        am_config["receivers"] = [{"name": r["name"], "webhook_configs": [hook]} for r in am_config["receivers"]]
        (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(am_config))
        procs.append(start([alertmanager, f"--config.file={tmp_path / 'alertmanager.yml'}",
                            f"--storage.path={tmp_path / 'am-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
                            "--cluster.listen-address="], tmp_path / "alertmanager.log"))

        # 3. Prometheus with the local config and the rules (test-only timings)
        prom_dir = tmp_path / "prom"
        prom_dir.mkdir()
        config = yaml.safe_load((PROM / "prometheus-local.yml").read_text())
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{am_port}"]
        config["scrape_configs"][0]["file_sd_configs"][0]["files"] = [str(targets)]
        (prom_dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        rules = (PROM / "mage_rules.yml").read_text()
        rules = rules.replace('rate(mage_episodes_completed_total{role="worker"}[5m])) < 0.1\n        for: 10m',
                              'rate(mage_episodes_completed_total{role="worker"}[20s])) < 0.1\n        for: 5s')
        assert "[20s]" in rules
        (prom_dir / "mage_rules.yml").write_text(rules)
        prom_port = free_port()
        procs.append(start([prometheus, f"--config.file={prom_dir / 'prometheus.yml'}",
                            f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                           tmp_path / "prometheus.log"))
        wait_until("targets scraped", lambda: len(query(prom_port, 'up{job="mage-pods"} == 1')) == 3, timeout=60)
        wait_until("transport error scraped", lambda: query(
            prom_port, 'mage_errors_total{component="transport",kind="malformed"} > 0'), timeout=60)

        # every catalogue metric is scraped
        names = {r["metric"]["__name__"] for r in query(prom_port, 'group by (__name__) ({__name__=~"mage_.*"})')}
        for spec in CATALOGUE:
            if spec.name in NO_GPU:
                continue
            wanted = spec.name + ("_count" if spec.kind == "histogram" else "")
            assert wanted in names, f"{spec.name} not scraped"

        # every dashboard query returns data (variables at "all")
        dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "mage-ai-training.json").read_text())
        for title, expr in dashboard_queries(dashboard):
            if title in GPU_PANELS:
                continue
            expr = re.sub(r'\$(cluster|namespace|run)', ".*", expr).replace("$__rate_interval", "1m")
            wait_until(f"data for panel {title!r}: {expr}", lambda: query(prom_port, expr), timeout=90)

        # 4. federation: a second Prometheus running the guide's federation job
        fed = yaml.safe_load((PROM / "federation.yml").read_text())
        fed["scrape_configs"][0]["scrape_interval"] = "1s"
        fed["scrape_configs"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{prom_port}"]
        (tmp_path / "federation.yml").write_text(yaml.safe_dump(fed))
        fed_port = free_port()
        procs.append(start([prometheus, f"--config.file={tmp_path / 'federation.yml'}",
                            f"--storage.tsdb.path={tmp_path / 'tsdb-fed'}", f"--web.listen-address=127.0.0.1:{fed_port}"],
                           tmp_path / "prometheus-fed.log"))
        federated = wait_until("federated series", lambda: query(fed_port, 'mage_training_updates_total{role="learner"}'),
                               timeout=60)
        assert federated[0]["metric"]["job"] == "mage-pods"  # honor_labels keeps the original job

        # 5. stopping the workers' game runners fires LowEpisodeGenerationRate, and it is delivered
        launched = {e["runner"]: e["pid"] for e in events(run_dir / "logs" / "worker-0.log", "runner_launched")}
        runners = list(launched.values())  # the latest process of each runner
        assert runners
        assert not events(run_dir / "logs" / "worker-0.log", "runner_died"), "a runner crashed during the run"
        for pid in runners:
            os.kill(pid, signal.SIGSTOP)
        try:
            def delivered():
                return [a for n in Webhook.received for a in n["alerts"]
                        if a["labels"]["alertname"] == "LowEpisodeGenerationRate" and a["status"] == "firing"]

            alerts = wait_until("LowEpisodeGenerationRate notification", delivered, timeout=120)
            assert alerts[0]["labels"]["pod"] == "worker-0" and alerts[0]["labels"]["severity"] == "warning"
            assert not [a for n in Webhook.received for a in n["alerts"]
                        if a["labels"]["alertname"] == "LowEpisodeGenerationRate" and a["labels"].get("pod") != "worker-0"]
        finally:
            for pid in runners:
                os.kill(pid, signal.SIGCONT)

        # 6. Fluent Bit parses a log file the run wrote (as the container runtime stores it)
        lines = learner_log.read_text().splitlines()
        cri = "".join(f"2026-11-28T20:00:00.000000000Z stdout F {line}\n" for line in lines if line.startswith("{"))
        (tmp_path / "fb").mkdir()
        records = run_fluent_bit(tmp_path / "fb", {"mage-learner-0.log": cri})
        parsed = [r for r in records if r.get("component") == "learner"]
        assert {"learner_ready", "checkpoint_saved", "update"} <= {r["event"] for r in parsed}
        assert all(r["run_id"] == "run" for r in parsed)
        errors = [r for r in records if r.get("log_stream") == "errors"]
        assert errors and all(r["level"] == "error" for r in errors)  # the malformed message
    finally:
        webhook.shutdown()
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT if proc is procs[0] else signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp_path / "tsdb", ignore_errors=True)
