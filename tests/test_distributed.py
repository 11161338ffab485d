"""Learner and worker as real processes over ZeroMQ: weights flow, failures stay contained.

One scenario, in order: weights reach the workers; a malformed message is counted and
the learner lives on; kill -9 of one runner leaves the other playing (and it is
replaced); kill -9 of the learner, then a restart, resumes the update counter from the
checkpoint while the same worker process reconnects by itself.
"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
import zmq

from conftest import wait_until
from magerl.train import Child, free_port

pytestmark = pytest.mark.slow




def metric(child: Child, key: str) -> float:
    return child.scrape().get(key, 0.0)


def test_weights_flow_and_failures_stay_contained(tmp_path) -> None:
    env = {**os.environ, "METRICS_PORT": "0", "PYTHONUNBUFFERED": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    episodes_port, weights_port = free_port(), free_port()
    ports = ["--episodes-port", str(episodes_port), "--weights-port", str(weights_port)]
    learner_args = ["learner", "--checkpoint-dir", str(tmp_path / "ckpt"), "--bind-host", "127.0.0.1", *ports,
                    "--max-samples-per-batch", "32", "--checkpoint-every", "1", "--d-model", "16", "--layers", "1",
                    "--heads", "2", "--metrics-addr", "127.0.0.1"]
    worker_args = ["worker", "--learner", "127.0.0.1", *ports, "--runners", "2", "--opponents", "engine:veryeasy=1",
                   "--metrics-addr", "127.0.0.1", "--max-turns", "40"]
    learner = Child("learner", learner_args, tmp_path / "learner.log")
    worker = Child("worker", worker_args, tmp_path / "worker.log")
    children = [learner, worker]
    try:
        learner.start(env)
        wait_until("learner ready", lambda: "learner_ready" in learner.events)
        worker.start(env)

        # 1. weights reach the workers
        wait_until("learner updates", lambda: metric(learner, "mage_training_updates_total") >= 2)
        wait_until("workers take new weights", lambda: metric(worker, "mage_policy_version") >= 1)

        # 2. a malformed message is counted, and the learner lives on
        ctx = zmq.Context()
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 1000)
        push.connect(f"tcp://127.0.0.1:{episodes_port}")
        push.send(b"\x00not an episode")
        push.close()
        ctx.term()
        key = 'mage_errors_total{component=transport,kind=malformed}'
        wait_until("malformed message counted", lambda: metric(learner, key) >= 1)
        assert learner.alive()

        # 3. kill -9 of one runner: the other keeps playing, the supervisor replaces it
        runners = [psutil.Process(e["pid"]) for e in worker.history if e["event"] == "runner_launched"]
        assert len(runners) == 2 and all(p.ppid() == worker.proc.pid for p in runners)
        played = metric(worker, "mage_episodes_completed_total")
        os.kill(runners[0].pid, signal.SIGKILL)
        time.sleep(1)
        assert runners[1].is_running()
        wait_until("runner death noticed", lambda: any(e["event"] == "runner_died" for e in worker.history))
        wait_until("games go on", lambda: metric(worker, "mage_episodes_completed_total") >= played + 2)
        assert metric(worker, "mage_errors_total{component=worker,kind=runner_died}") >= 1
        wait_until("runner replaced", lambda: metric(worker, "mage_worker_game_runners") == 2)

        # 4. kill -9 of the learner; a restart resumes from its checkpoint; the worker reconnects
        wait_until("a checkpoint", lambda: "checkpoint_saved" in learner.events)
        os.kill(learner.proc.pid, signal.SIGKILL)
        learner.wait(30)
        saved = max(e["updates"] for e in learner.history if e["event"] == "checkpoint_saved")
        worker_pid = worker.proc.pid
        restarted = Child("learner-2", learner_args, tmp_path / "learner-2.log")
        children.append(restarted)
        restarted.start(env)
        resumed = wait_until("resumed", lambda: restarted.events.get("resumed"))
        assert resumed["updates"] >= saved
        wait_until("training continues", lambda: metric(restarted, "mage_training_updates_total") >= 1)
        assert restarted.events["update"]["updates"] > resumed["updates"]
        wait_until("worker follows the new versions",
                   lambda: metric(worker, "mage_policy_version") > resumed["updates"])
        assert worker.alive() and worker.proc.pid == worker_pid
    finally:
        for child in children:
            child.signal(signal.SIGTERM)
        for child in children:
            if child.proc is not None:
                child.wait(30)
