"""A rate-limiting proxy in front of a UNIX socket: a slow link to an engine, for tests and benchmarks.

``Throttle(upstream, rate)`` listens on a socket of its own (``.path``) and
forwards every connection to ``upstream`` (an engine's ``docker.sock``),
letting at most ``rate`` bytes per second through towards the engine (what a
load sends); answers come back unthrottled. It stands in for an edge host on a
cellular link: the engine behind it is real, only the link is slowed.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from typing import Any

PIECE = 64 << 10


class Throttle:
    """Serve ``upstream`` at ``rate`` bytes/s (client to engine) on :attr:`path`, until :meth:`stop`."""

    def __init__(self, upstream: str, rate: float) -> None:
        self.upstream = upstream
        self.rate = rate
        self._dir = tempfile.mkdtemp(prefix="al-throttle-")
        self.path = os.path.join(self._dir, "slow.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(16)
        self._open: list[socket.socket] = []
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            engine.connect(self.upstream)
            self._open += [client, engine]
            threading.Thread(target=self._pump, args=(client, engine, self.rate), daemon=True).start()
            threading.Thread(target=self._pump, args=(engine, client, None), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, rate: float | None) -> None:
        """Copy ``src`` to ``dst``; with a rate, never ahead of ``rate`` bytes/s since the first byte."""
        started, moved = None, 0
        try:
            while True:
                data = src.recv(PIECE)
                if not data:
                    break
                if rate:
                    started = started if started is not None else time.monotonic()
                    moved += len(data)
                    ahead = moved / rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def stop(self) -> None:
        self._stopped.set()
        for sock in [self._listener, *self._open]:
            try:
                sock.close()
            except OSError:
                pass
        try:
            os.unlink(self.path)
            os.rmdir(self._dir)
        except OSError:
            pass

    def __enter__(self) -> "Throttle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
