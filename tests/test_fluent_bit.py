"""Fluent Bit, run for real on CRI- and docker-format container logs of magerl events."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

from conftest import fluent_bit_binary
from magerl.telemetry.logs import EventLog, configure_logging

ROOT = Path(__file__).resolve().parents[1]
FB = ROOT / "deploy" / "fluent-bit"


def magerl_lines() -> list[str]:
    stream = io.StringIO()
    configure_logging("worker", stream=stream)
    log = EventLog("worker")
    log.info("episode_completed", runner=1, turns=14)
    log.error("engine_error", kind="panic", component="engine", exc=RuntimeError("boom"))
    return stream.getvalue().splitlines()


def run_fluent_bit(tmp_path: Path, files: dict[str, str]) -> list[dict]:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    multiline = next(l for l in (FB / "input-kubernetes.conf").read_text().splitlines() if "multiline.parser" in l)
    (tmp_path / "test.conf").write_text(f"""
[SERVICE]
    Flush         1
    Log_Level     warn
    Parsers_File  {FB / "parsers.conf"}

[INPUT]
    Name              tail
    Tag               kube.test
    Path              {tmp_path}/mage-*.log
{multiline}
    Read_from_Head    On
    Exit_On_Eof       On

@INCLUDE {FB / "pipeline.conf"}
@INCLUDE {FB / "outputs.conf"}
""")
    proc = subprocess.run([fluent_bit_binary(), "-c", str(tmp_path / "test.conf")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_parses_cri_and_docker_logs_and_separates_errors(tmp_path) -> None:
    info, error = magerl_lines()
    cri = "".join(f"2026-11-28T20:00:0{i}.000000000Z stdout F {line}\n" for i, line in enumerate([info, error]))
    cri += "2026-11-28T20:00:09.000000000Z stderr F Traceback (most recent call last):\n"
    docker = json.dumps({"log": info + "\n", "stream": "stdout", "time": "2026-11-28T20:00:05.0Z"}) + "\n"
    records = run_fluent_bit(tmp_path, {"mage-worker-a.log": cri, "mage-worker-b.log": docker})

    events = [r for r in records if r.get("event") == "episode_completed"]
    assert len(events) == 2  # one from each format, parsed into fields
    for r in events:
        assert r["component"] == "worker" and r["runner"] == 1 and r["turns"] == 14 and "run_id" in r
        assert "log_stream" not in r
    (err,) = [r for r in records if r.get("event") == "engine_error"]
    assert err["log_stream"] == "errors" and err["kind"] == "panic" and err["error_type"] == "RuntimeError"
    raw = [r for r in records if "Traceback" in r.get("log", "")]
    assert len(raw) == 1  # a line that is not JSON passes through untouched


def test_never_routes_logs_into_prometheus_exporter() -> None:
    for path in FB.glob("*.conf"):
        text = path.read_text()
        if "prometheus_exporter" in text:
            assert path.name == "log-to-metrics.conf" and "log_to_metrics" in text
