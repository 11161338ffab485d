"""Kubernetes manifests, deploy script and image: validated, and their commands really run."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from magerl.train import free_port

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "k8s"
MANIFESTS = sorted(K8S.glob("*.yaml")) + sorted((K8S / "operator").glob("*.yaml"))


def objects(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def find(kind: str, name: str, path: Path) -> dict:
    (obj,) = [o for o in objects(path) if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def validate(*paths: Path | str) -> subprocess.CompletedProcess:
    tool = shutil.which("kubernetes-validate") or str(Path(sys.executable).parent / "kubernetes-validate")
    return subprocess.run([tool, "--strict", *map(str, paths)], capture_output=True, text=True, timeout=300)


def test_manifests_validate_strictly() -> None:
    out = validate(*MANIFESTS)
    assert out.returncode == 0, out.stdout + out.stderr
    failures = [l for l in out.stdout.splitlines() if l.startswith(("ERROR", "FAIL"))]
    assert failures == []
    warnings = [l for l in out.stdout.splitlines() if l.startswith("WARN")]
    assert all("monitoring.coreos.com" in w for w in warnings), warnings  # only the operator's CRDs


def test_rendered_configs_are_current() -> None:
    spec = importlib.util.spec_from_file_location("render_k8s", ROOT / "deploy" / "render_k8s.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    for path, text in render.outputs().items():
        assert path.read_text() == text, f"{path} is stale: python deploy/render_k8s.py"


def test_the_guides_names_exist() -> None:
    workload, stack, configs = K8S / "gpu-deployment.yaml", K8S / "monitoring-stack.yaml", K8S / "monitoring-configs.yaml"
    for app in ("mage-learner", "mage-worker"):  # kubectl get pods -l app=...
        deployment = find("Deployment", app, workload)
        assert deployment["spec"]["template"]["metadata"]["labels"]["app"] == app
    assert find("Deployment", "mage-worker", workload)  # kubectl scale deployment mage-worker
    for name, port in (("grafana", 3000), ("prometheus", 9090)):  # kubectl port-forward svc/NAME PORT:PORT -n mage-monitoring
        service = find("Service", name, stack)
        assert service["metadata"]["namespace"] == "mage-monitoring"
        assert port in [p["port"] for p in service["spec"]["ports"]]
    assert find("ConfigMap", "prometheus-config", configs)["metadata"]["namespace"] == "mage-monitoring"
    learner = find("Deployment", "mage-learner", workload)["spec"]["template"]["spec"]["containers"][0]
    assert learner["resources"]["requests"]["nvidia.com/gpu"] == 1 and learner["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"] for c in _containers(workload) for e in c.get("env", [])}
    assert {"NUM_GAME_RUNNERS", "MAX_SAMPLES_PER_BATCH", "METRICS_PORT"} <= env
    retention = find("Deployment", "prometheus", stack)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--storage.tsdb.retention.time=30d" in retention
    assert find("Deployment", "grafana", stack)["spec"]["replicas"] == 2


def test_the_learner_trains_on_the_cpus_its_limit_gives() -> None:
    """torch counts the node's cores, not the pod's; a thread per node core would be throttled."""
    learner = find("Deployment", "mage-learner", K8S / "gpu-deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    args = learner["args"]
    assert args[args.index("--threads") + 1] == learner["resources"]["limits"]["cpu"]


def _containers(path: Path) -> list[dict]:
    out = []
    for o in objects(path):
        if o["kind"] in ("Deployment", "DaemonSet"):
            out += o["spec"]["template"]["spec"]["containers"]
    return out


def test_security_settings_and_no_committed_passwords() -> None:
    for path in (K8S / "gpu-deployment.yaml", K8S / "monitoring-stack.yaml"):
        for o in objects(path):
            if o["kind"] not in ("Deployment", "DaemonSet"):
                continue
            pod = o["spec"]["template"]["spec"]
            assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", o["metadata"]["name"]
            for c in pod["containers"]:
                sc = c["securityContext"]
                assert sc["readOnlyRootFilesystem"] and sc["capabilities"]["drop"] == ["ALL"], c["name"]
                assert sc["allowPrivilegeEscalation"] is False, c["name"]
                assert "limits" in c["resources"] and "requests" in c["resources"], c["name"]
                non_root = sc.get("runAsNonRoot", pod["securityContext"].get("runAsNonRoot"))
                # Fluent Bit reads the node's root-owned container logs: the one documented exception.
                assert non_root or c["name"] == "fluent-bit", c["name"]
    grafana = find("Deployment", "grafana", K8S / "monitoring-stack.yaml")["spec"]["template"]["spec"]["containers"][0]
    password = next(e for e in grafana["env"] if e["name"] == "GF_SECURITY_ADMIN_PASSWORD")
    assert password["valueFrom"]["secretKeyRef"]["name"] == "grafana-admin"
    for path in [*MANIFESTS, ROOT / "deploy" / "alertmanager" / "alertmanager.yml"]:
        assert "admin123" not in path.read_text() and not re.search(r"(?i)password:\s*['\"]?\w", path.read_text()), path
    assert not any(o["kind"] == "Secret" for p in MANIFESTS for o in objects(p))


def test_deploy_script_dry_run(tmp_path) -> None:
    out = subprocess.run([str(ROOT / "scripts" / "deploy-monitoring.sh"), "--dry-run"], capture_output=True, text=True,
                         timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    rendered = [d for d in yaml.safe_load_all(out.stdout) if d]
    kinds = [d["kind"] for d in rendered]
    assert kinds[0] == "Namespace" and kinds[1] == "Secret" and "DaemonSet" in kinds
    assert rendered[1]["stringData"]["admin-password"].startswith("<random")
    (tmp_path / "dry-run.yaml").write_text(out.stdout)
    assert validate(tmp_path / "dry-run.yaml").returncode == 0
    bad = subprocess.run([str(ROOT / "scripts" / "deploy-monitoring.sh"), "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown option" in bad.stderr


def test_dockerfile_is_non_root_and_lean() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    names = [s.split()[2] if " AS " in s.split("\n")[0] else "" for s in stages]
    assert {"cpu", "learner"} <= set(names)
    runtime = stages[names.index("runtime")]
    assert "USER 10001" in runtime and "apt-get" not in runtime and "gcc" not in runtime
    assert (ROOT / ".dockerignore").read_text().count(".venv") == 1


# -- the workload's commands, run locally with their env --------------------------------
def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.mark.slow
def test_workload_containers_run_and_become_ready(tmp_path) -> None:
    """Each container's command, args and env, as the manifest gives them, starts a process
    that becomes ready. Only what a laptop lacks is mapped: volumes to temporary folders,
    the learner Service name to 127.0.0.1, ports to free ones, the downward API's pod name,
    and one game runner instead of three."""
    workload = K8S / "gpu-deployment.yaml"
    learner_service = find("Service", "mage-learner", workload)
    service_ports = {p["name"]: p["port"] for p in learner_service["spec"]["ports"]}
    remap = {str(service_ports["episodes"]): str(free_port()), str(service_ports["weights"]): str(free_port())}
    procs = []
    try:
        for app in ("mage-learner", "mage-worker", "mage-evaluator"):
            deployment = find("Deployment", app, workload)
            pod = deployment["spec"]["template"]
            (container,) = pod["spec"]["containers"]
            metrics = next(p for p in container["ports"] if p["name"] == "metrics")["containerPort"]
            env_values = {e["name"]: e.get("value") for e in container["env"]}
            assert int(env_values["METRICS_PORT"]) == metrics == int(pod["metadata"]["annotations"]["prometheus.io/port"])
            assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            mounts = {m["mountPath"]: str(tmp_path / app / m["name"]) for m in container.get("volumeMounts", [])}

            def local(value: str) -> str:
                for mount, folder in mounts.items():
                    if value == mount or value.startswith(mount + "/"):
                        return folder + value[len(mount):]
                return remap.get(value, value)

            env = {k: local(v) for k, v in env_values.items() if v is not None}
            if "MAGERL_LEARNER" in env:
                env["MAGERL_LEARNER"] = "127.0.0.1"  # the Service's DNS name
            if "NUM_GAME_RUNNERS" in env:
                env["NUM_GAME_RUNNERS"] = "1"  # a valid value the 2-core test machine can carry
            port = free_port()
            env["METRICS_PORT"] = str(port)
            env["POD_NAME"] = app  # from the downward API
            args = [local(a) for a in container["args"]]
            command = container["command"]
            assert command[0] == "magerl"
            for folder in mounts.values():
                os.makedirs(folder, exist_ok=True)
            full_env = {**{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}, **env}
            log = open(tmp_path / f"{app}.log", "wb")
            procs.append((app, port, subprocess.Popen([sys.executable, "-m", "magerl.cli", *command[1:], *args],
                                                     env=full_env, stdout=log, stderr=subprocess.STDOUT)))
        deadline = time.monotonic() + 240
        for app, port, proc in procs:
            while not ready(port):
                assert proc.poll() is None, f"{app} exited: {(tmp_path / f'{app}.log').read_text()[-2000:]}"
                assert time.monotonic() < deadline, f"{app} never became ready"
                time.sleep(1)
    finally:
        for _, _, proc in procs:
            proc.terminate()
        for _, _, proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
