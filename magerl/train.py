"""`magerl train`: learner, workers and evaluator as local processes on loopback.

The same commands a cluster runs (`magerl learner`, `magerl worker`, `magerl evaluator`),
started as child processes with free ports, their JSON logs written to the run folder,
a live view read from their own /metrics endpoints, and a clean stop on Ctrl-C: workers
and evaluator first, then the learner, which writes a final checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Child:
    name: str
    args: list[str]
    log_path: Path
    proc: subprocess.Popen | None = None
    metrics_port: int | None = None
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # the latest entry of each event
    history: list[dict[str, Any]] = field(default_factory=list)

    def start(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "magerl.cli", *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()

    def _pump(self, stream: IO[bytes]) -> None:
        with open(self.log_path, "ab") as log:
            for line in stream:
                log.write(line)
                log.flush()
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and "event" in entry:
                    self.events[entry["event"]] = entry
                    self.history.append(entry)
                    if entry["event"] == "metrics_listening":
                        self.metrics_port = int(entry["port"])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def scrape(self) -> dict[str, float]:
        """Sample name{labels} → value from this child's /metrics (empty when unreachable)."""
        if self.metrics_port is None:
            return {}
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as resp:
                text = resp.read().decode()
        except OSError:
            return {}
        out = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        return out


@dataclass
class TrainOptions:
    run_dir: Path
    workers: int = 1
    runners: int = 1
    updates: int | None = None
    hours: float | None = None
    resume: bool = False
    learner_args: list[str] = field(default_factory=list)
    worker_args: list[str] = field(default_factory=list)
    evaluator_args: list[str] = field(default_factory=list)


class Trainer:
    def __init__(self, options: TrainOptions) -> None:
        self.o = options
        self.children: list[Child] = []
        self.stopping = False
        self.final: dict[str, float] = {}  # the latest metrics seen, for the summary

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        child = Child(name, args, self.o.run_dir / "logs" / f"{name}.log")
        child.start(env)
        self.children.append(child)
        return child

    def _wait_for(self, child: Child, event: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while event not in child.events:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited (code {child.proc.returncode if child.proc else '?'}); see {child.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} did not report {event} within {timeout:.0f} s; see {child.log_path}")
            time.sleep(0.1)

    def run(self) -> int:
        o = self.o
        (o.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "METRICS_PORT": "0", "MAGERL_RUN_ID": o.run_dir.name, "PYTHONUNBUFFERED": "1"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # each child is its own pod with its own directory
        episodes_port, weights_port = free_port(), free_port()
        ports = ["--episodes-port", str(episodes_port), "--weights-port", str(weights_port)]
        learner_args = ["learner", "--checkpoint-dir", str(o.run_dir / "checkpoints"), "--bind-host", "127.0.0.1",
                        "--metrics-addr", "127.0.0.1", *ports, *o.learner_args]
        if o.updates is not None:
            learner_args += ["--max-updates", str(o.updates)]
        learner = self._spawn("learner", learner_args, env)
        print(f"run folder: {o.run_dir}", flush=True)
        self._wait_for(learner, "learner_ready", 300)
        common = ["--learner", "127.0.0.1", *ports, "--metrics-addr", "127.0.0.1"]
        for i in range(o.workers):
            self._spawn(f"worker-{i}", ["worker", *common, "--runners", str(o.runners), *o.worker_args], env)
        self._spawn("evaluator", ["evaluator", *common, *o.evaluator_args], env)
        for child in self.children:
            self._wait_for(child, "metrics_listening", 120)
            print(f"{child.name:<10} metrics http://127.0.0.1:{child.metrics_port}/metrics   log {child.log_path}", flush=True)
        self._write_targets()

        deadline = time.monotonic() + o.hours * 3600 if o.hours else None
        previous = signal.signal(signal.SIGINT, self._on_interrupt)
        start = time.monotonic()
        try:
            while not self.stopping and learner.alive():
                if deadline and time.monotonic() > deadline:
                    break
                failed = [c for c in self.children if c is not learner and not c.alive()]
                if failed:
                    print(f"\n{failed[0].name} exited; see {failed[0].log_path}", file=sys.stderr)
                    break
                self._show(time.monotonic() - start)
                time.sleep(2)
        finally:
            signal.signal(signal.SIGINT, previous)
            code = self._shutdown(learner)
        self._summary(learner, time.monotonic() - start)
        return code

    def _write_targets(self) -> None:
        """RUN_DIR/prometheus-targets.json: file discovery for deploy/prometheus/prometheus-local.yml."""
        targets = []
        for child in self.children:
            role = child.name.split("-")[0]
            labels = {"role": role, "app": f"mage-{role}", "pod": child.name, "namespace": "local", "run": self.o.run_dir.name}
            targets.append({"targets": [f"127.0.0.1:{child.metrics_port}"], "labels": labels})
        (self.o.run_dir / "prometheus-targets.json").write_text(json.dumps(targets, indent=1))

    def _on_interrupt(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def _shutdown(self, learner: Child) -> int:
        print("\nstopping: workers and evaluator, then the learner (final checkpoint)", flush=True)
        self.final = {**self.final, **self._gather()}
        for child in self.children:
            if child is not learner:
                child.signal(signal.SIGTERM)
        for child in self.children:
            if child is not learner:
                child.wait(30)
        learner.signal(signal.SIGTERM)
        return 0 if learner.wait(120) == 0 else 1

    def _gather(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for child in self.children:
            for key, value in child.scrape().items():
                if key.startswith(("mage_policy_version", "mage_training_loss", "mage_win_rate", "mage_policy_lag")):
                    totals[f"{child.name}:{key}"] = value
                else:
                    totals[key] = totals.get(key, 0.0) + value
        return totals

    def _training_results(self, window: int | None = None) -> dict[str, list[int]]:
        """[wins, games] per opponent of the training games (the learner's update events),
        the latest `window` games or so of each, or all of them."""
        learner = next(c for c in self.children if c.name == "learner")
        tallies: dict[str, list[int]] = {}
        for entry in reversed(learner.history):
            for opponent, (wins, games) in (entry.get("results") or {}).items():
                tally = tallies.setdefault(opponent, [0, 0])
                if window is None or tally[1] < window:
                    tally[0] += wins
                    tally[1] += games
        return tallies

    def _show(self, elapsed: float) -> None:
        m = self.final = self._gather()
        episodes = m.get("mage_episodes_completed_total", 0)
        worker_versions = [v for k, v in m.items() if k.startswith("worker-") and k.endswith(":mage_policy_version")]
        win = " ".join(f"{k.split('opponent=')[1].rstrip('}')} {v:.0%}" for k, v in sorted(m.items()) if "mage_win_rate{" in k)
        line = (
            f"{elapsed:6.0f}s  episodes {episodes:.0f} ({episodes / max(elapsed, 1):.2f}/s)  "
            f"updates {m.get('mage_training_updates_total', 0):.0f}  loss {m.get('learner:mage_training_loss', float('nan')):.4f}  "
            f"policy v{m.get('learner:mage_policy_version', 0):.0f} workers v{min(worker_versions, default=-1):.0f} "
            f"lag {m.get('learner:mage_policy_lag_versions', 0):.1f}  win {win or '-'}"
        )
        played = " ".join(f"{name} {wins / games:.0%}" for name, (wins, games) in sorted(self._training_results(200).items())
                          if games)
        if played:
            line += f"  training games (last 200) {played}"
        if sys.stdout.isatty():
            width = shutil.get_terminal_size().columns - 1
            print("\r" + line[:width].ljust(width), end="", flush=True)
        elif int(elapsed) % 20 < 2:
            print(line, flush=True)

    def _summary(self, learner: Child, elapsed: float) -> None:
        saved = learner.events.get("checkpoint_saved", {})
        m = self.final
        updates = learner.events.get("learner_stopped", {}).get("updates", m.get("mage_training_updates_total", 0))
        print(f"done in {elapsed:.0f} s: {updates:.0f} updates, "
              f"{m.get('mage_episodes_completed_total', 0):.0f} episodes; last checkpoint {saved.get('path', 'none')}")
        for name, (wins, games) in sorted(self._training_results().items()):
            print(f"training games vs {name}: {wins}/{games} wins ({wins / max(games, 1):.1%})")
        evaluations = [c.events.get("evaluation") for c in self.children if c.name == "evaluator"]
        for entry in evaluations:
            if entry:
                print(f"last evaluation: policy v{entry['version']} vs {entry['opponent']}: "
                      f"{entry['wins']}/{entry['games']} wins")
