"""The worker pod: NUM_GAME_RUNNERS runner processes behind one /metrics endpoint.

Runners are processes, not threads: the engine holds the GIL. The supervisor restarts a
runner that dies (a kill -9 of one does not stop the others), keeps the live-runner
gauge, and stops everything cleanly on SIGTERM / Ctrl-C.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from typing import Any

from magerl import telemetry
from magerl.worker.runner import RunnerConfig, runner_main

RUNNERS_ENV = "NUM_GAME_RUNNERS"


def default_runners() -> int:
    raw = os.environ.get(RUNNERS_ENV)
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"{RUNNERS_ENV}={raw!r} must be a positive integer")
        return int(raw)
    return max(1, (os.cpu_count() or 1) - 1)


def run_worker(config: RunnerConfig, runners: int, *, port: int | None = None, addr: str = "0.0.0.0",
               stop: threading.Event | None = None) -> None:
    ctx = multiprocessing.get_context("spawn")
    stop_children = ctx.Event()
    stop = stop or threading.Event()
    procs: dict[int, Any] = {}
    tm = telemetry.start("worker", port=port, addr=addr, ready=lambda: any(p.is_alive() for p in procs.values()))
    log = tm.log

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def launch(index: int) -> None:
        proc = ctx.Process(target=runner_main, args=(index, config, stop_children), name=f"magerl-runner-{index}", daemon=True)
        proc.start()
        procs[index] = proc
        log.info("runner_launched", runner=index, pid=proc.pid)

    for index in range(runners):
        launch(index)
    log.info("worker_started", runners=runners, episodes=config.episodes_address, weights=config.weights_address)
    try:
        while not stop.wait(1.0):
            for index, proc in list(procs.items()):
                if proc.exitcode is not None:
                    log.error("runner_died", kind="runner_died", runner=index, pid=proc.pid, exitcode=proc.exitcode)
                    telemetry.process_exited(proc.pid)
                    launch(index)
            tm.metrics.set_game_runners(sum(p.is_alive() for p in procs.values()))
    finally:
        stop_children.set()
        deadline = time.monotonic() + 15
        for proc in procs.values():
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            telemetry.process_exited(proc.pid)
        tm.metrics.set_game_runners(0)
        log.info("worker_stopped")
        tm.close()
