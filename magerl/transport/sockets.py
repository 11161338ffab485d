"""ZeroMQ endpoints: workers PUSH episodes to the learner's PULL; the learner PUBlishes
weights to the workers' and evaluator's SUB. No broker: the learner binds, everyone else
connects, and ZeroMQ reconnects by itself when a learner restarts.
"""

from __future__ import annotations

from collections import deque

import zmq

from magerl.transport.messages import MAX_MESSAGE_BYTES

DEFAULT_EPISODES_PORT = 5555
DEFAULT_WEIGHTS_PORT = 5556


class EpisodeSender:
    """A bounded outbox in front of a PUSH socket; the oldest episode is dropped when full."""

    def __init__(self, ctx: zmq.Context, address: str, capacity: int = 8) -> None:
        self.socket = ctx.socket(zmq.PUSH)
        self.socket.setsockopt(zmq.SNDHWM, 2)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        self.socket.connect(address)
        self.outbox: deque[bytes] = deque()
        self.capacity = capacity

    def send(self, payload: bytes) -> int:
        """Queue `payload` and send what the socket takes now; returns episodes dropped."""
        self.outbox.append(payload)
        dropped = 0
        while len(self.outbox) > self.capacity:
            self.outbox.popleft()
            dropped += 1
        self.flush()
        return dropped

    def flush(self) -> None:
        while self.outbox:
            try:
                self.socket.send(self.outbox[0], zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.outbox.popleft()

    def close(self) -> None:
        self.socket.close(0)


class EpisodeReceiver:
    def __init__(self, ctx: zmq.Context, address: str) -> None:
        self.socket = ctx.socket(zmq.PULL)
        self.socket.setsockopt(zmq.RCVHWM, 64)
        # A hard ceiling far above our own check, which counts what it drops.
        self.socket.setsockopt(zmq.MAXMSGSIZE, 4 * MAX_MESSAGE_BYTES)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.port = bind(self.socket, address)

    def receive(self, timeout_ms: int) -> bytes | None:
        if self.socket.poll(timeout_ms):
            return self.socket.recv(copy=True)
        return None

    def close(self) -> None:
        self.socket.close(0)


class WeightsPublisher:
    def __init__(self, ctx: zmq.Context, address: str) -> None:
        self.socket = ctx.socket(zmq.PUB)
        self.socket.setsockopt(zmq.SNDHWM, 2)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.port = bind(self.socket, address)

    def publish(self, payload: bytes) -> None:
        try:
            self.socket.send(payload, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            pass  # a slow subscriber gets the next version

    def close(self) -> None:
        self.socket.close(0)


class WeightsSubscriber:
    """Keeps only the newest weights message (CONFLATE)."""

    def __init__(self, ctx: zmq.Context, address: str) -> None:
        self.socket = ctx.socket(zmq.SUB)
        self.socket.setsockopt(zmq.CONFLATE, 1)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        self.socket.setsockopt(zmq.MAXMSGSIZE, 4 * MAX_MESSAGE_BYTES)
        self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        self.socket.connect(address)

    def latest(self, timeout_ms: int = 0) -> bytes | None:
        if self.socket.poll(timeout_ms):
            return self.socket.recv(copy=True)
        return None

    def close(self) -> None:
        self.socket.close(0)


def bind(socket: zmq.Socket, address: str) -> int:
    """Bind to `address`; a port of 0 picks a free one. Returns the port."""
    if address.endswith(":0"):
        return socket.bind_to_random_port(address[: -len(":0")])
    socket.bind(address)
    return int(address.rsplit(":", 1)[1])
