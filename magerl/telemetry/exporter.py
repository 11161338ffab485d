"""The pod's HTTP endpoint: `/metrics`, `/healthz` (alive) and `/readyz` (doing its job).

Served from the pod's root process on METRICS_PORT (default 9090; 0 picks a free port).
`/metrics` merges every process's values (prometheus_client multiprocess mode) and adds
the standard process and Python collectors of the root process.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.multiprocess import MultiProcessCollector

PORT_ENV = "METRICS_PORT"
DEFAULT_PORT = 9090


def metrics_port(default: int = DEFAULT_PORT) -> int:
    raw = os.environ.get(PORT_ENV, "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) > 65535:
        raise ValueError(f"{PORT_ENV}={raw!r} is not a port number (0 picks a free port)")
    return int(raw)


def scrape_registry(directory: str) -> CollectorRegistry:
    """A registry that reads the pod's multiprocess files plus the root process's collectors."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes every 15 s would flood the logs
        pass


class Exporter:
    """HTTP server in a daemon thread; `ready` is polled by /readyz."""

    def __init__(self, directory: str, *, port: int, addr: str = "0.0.0.0", ready: Callable[[], bool] = lambda: True) -> None:
        self.ready = ready
        self._metrics_app = make_wsgi_app(scrape_registry(directory))
        self._server = make_server(addr, port, self._app, ThreadingWSGIServer, handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="magerl-exporter", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok\n")
        if path == "/readyz":
            ok = self.ready()
            return _text(start_response, "200 OK" if ok else "503 Service Unavailable", "ready\n" if ok else "not ready\n")
        if path in ("/metrics", "/"):
            return self._metrics_app(environ, start_response)
        return _text(start_response, "404 Not Found", "try /metrics, /healthz or /readyz\n")

    def start(self) -> "Exporter":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _text(start_response: Callable[..., Any], status: str, body: str) -> list[bytes]:
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))])
    return [data]
