"""Readings that no code path "records": GPU memory and the pod's resident memory.

A sampler thread in the pod's root process reads them every few seconds and sets the
catalogue gauges through the same API the rest of the code uses. Without a GPU the GPU
gauges are never set, so they are absent from /metrics rather than a misleading zero.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Callable

import psutil

from magerl.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

GpuReading = tuple[int, int, int]  # (device index, used bytes, total bytes)


def process_tree_rss(pid: int | None = None) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass  # exited between listing and reading
    return total


def nvml_reader() -> Callable[[], list[GpuReading]] | None:
    """A reader of every GPU's memory through NVML, or None where NVML has no GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:  # no library, no driver or no device: pynvml raises NVMLError subclasses
        return None
    if not handles:
        return None

    def read() -> list[GpuReading]:
        readings = []
        for index, handle in enumerate(handles):
            info = pynvml.nvmlDeviceGetMemoryInfo(handle)
            readings.append((index, int(info.used), int(info.total)))
        return readings

    return read


def torch_reader() -> Callable[[], list[GpuReading]] | None:
    """Fallback through torch, only where the process already uses torch with CUDA."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None

    def read() -> list[GpuReading]:
        readings = []
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            readings.append((index, int(total - free), int(total)))
        return readings

    return read


class Sampler:
    """Sets memory gauges every `interval` seconds until stopped."""

    def __init__(self, metrics: Metrics, interval: float = 5.0, gpu: bool = True) -> None:
        self.metrics = metrics
        self.interval = interval
        self._gpu = (nvml_reader() or torch_reader()) if gpu else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="magerl-sampler", daemon=True)

    def sample(self) -> None:
        try:
            self.metrics.set_memory_used(process_tree_rss())
            if self._gpu is not None:
                for index, used, total in self._gpu():
                    self.metrics.record_gpu_memory(used, total, gpu=index)
        except Exception as exc:  # a failed reading must not stop the sampler
            self.metrics.record_error("telemetry", "collector_failed")
            log.warning("collector_failed", extra={"fields": {"error_type": type(exc).__name__, "error": str(exc)}})

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def start(self) -> "Sampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
