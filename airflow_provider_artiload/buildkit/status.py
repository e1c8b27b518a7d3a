"""Render BuildKit ``Status`` like ``docker build --progress=plain``, into a logger.

::

    #1 [internal] load build definition from Dockerfile
    #1 transferring dockerfile: 143B done
    #1 DONE 0.0s
    #5 [stage-1 2/4] RUN echo hi
    #5 0.412 hi
    #5 DONE 0.5s
    #6 [build 1/3] COPY . /src
    #6 CACHED

Each vertex keeps its last log lines, so a failure can name the failing step
and show what it printed.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_artiload.progress import PLAIN, human

LAST_LINES = 20


@dataclass
class VertexState:
    number: int
    digest: str
    name: str = ""
    started: float | None = None
    completed: float | None = None
    cached: bool = False
    error: str = ""
    announced: bool = False
    finished: bool = False
    lines: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=LAST_LINES))
    partial: dict[int, str] = field(default_factory=dict)
    statuses_done: set[str] = field(default_factory=set)


def _seconds(ts: Any) -> float:
    return ts.seconds + ts.nanos / 1e9


class StatusPrinter:
    """Feed it StatusResponse messages; it logs plain progress lines and remembers failures."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.vertices: dict[str, VertexState] = {}
        self.lines_logged = 0

    def _vertex(self, digest: str) -> VertexState:
        state = self.vertices.get(digest)
        if state is None:
            state = VertexState(number=len(self.vertices) + 1, digest=digest)
            self.vertices[digest] = state
        return state

    def _emit(self, state: VertexState, text: str) -> None:
        self.lines_logged += 1
        self.log.info("#%d %s", state.number, text)

    def _announce(self, state: VertexState) -> None:
        if not state.announced:
            state.announced = True
            self._emit(state, state.name)

    def feed(self, response: Any) -> None:
        for vertex in response.vertexes:
            state = self._vertex(vertex.digest)
            state.name = vertex.name or state.name
            state.cached = state.cached or vertex.cached
            if vertex.HasField("started"):
                state.started = _seconds(vertex.started)
            if vertex.HasField("completed"):
                state.completed = _seconds(vertex.completed)
            if vertex.error:
                state.error = vertex.error
            if state.started is not None or state.cached:
                self._announce(state)
        for status in response.statuses:
            state = self._vertex(status.vertex)
            if status.HasField("completed") and status.ID not in state.statuses_done:
                state.statuses_done.add(status.ID)
                self._announce(state)
                amount = _amount(status.current, status.total)
                self._emit(state, f"{status.ID} {amount} done".replace("  ", " "))
        for entry in response.logs:
            state = self._vertex(entry.vertex)
            self._announce(state)
            text = state.partial.pop(entry.stream, "") + entry.msg.decode(errors="replace")
            *complete, rest = text.split("\n")
            if rest:
                state.partial[entry.stream] = rest
            offset = _seconds(entry.timestamp) - state.started if state.started else 0.0
            for line in complete:
                line = line.rstrip("\r")
                state.lines.append(line)
                self._emit(state, f"{offset:.3f} {line}")
        for vertex in response.vertexes:  # completions last: a batch's statuses and logs belong before DONE
            state = self.vertices[vertex.digest]
            if state.completed is not None and not state.finished:
                self._finish(state)

    def _finish(self, state: VertexState) -> None:
        state.finished = True
        for stream, rest in sorted(state.partial.items()):
            state.lines.append(rest)
            self._emit(state, rest)
        state.partial.clear()
        if state.error:
            self._emit(state, f"ERROR: {state.error}")
        elif state.cached:
            self._emit(state, "CACHED")
        else:
            took = (state.completed or 0.0) - (state.started or state.completed or 0.0)
            self._emit(state, f"DONE {took:.1f}s")

    def failed(self) -> VertexState | None:
        """The first vertex that reported an error (not a cancellation echo), if any."""
        errors = [s for s in self.vertices.values() if s.error]
        real = [s for s in errors if "context canceled" not in s.error]
        return (real or errors or [None])[0]


def _amount(current: int, total: int) -> str:
    if total:
        return f"{human(current, PLAIN)} / {human(total, PLAIN)}"
    return human(current, PLAIN) if current else ""


# What an engine without a bridge network (--bridge=none, or no docker0) answers a RUN step on the default network.
NO_BRIDGE = ("network bridge not found", "could not find bridge")
NO_BRIDGE_HINT = ("hint: the engine has no bridge network; set the BuildKit connection's network extra to none, "
                  "or give the engine a bridge")


def describe_failure(state: VertexState | None, daemon_message: str) -> str:
    """The failing step, the daemon's message and the step's last lines, for BuildError; a hint when one applies."""
    if state is None:
        text = daemon_message
    else:
        text = f"step #{state.number} {state.name} failed: {state.error or daemon_message}"
        lines = [line for line in state.lines if line.strip()]
        if lines:
            text += f"\nlast {len(lines)} lines of its output:\n" + "\n".join(f"  {line}" for line in lines)
    if any(sign in text for sign in NO_BRIDGE):
        text += f"\n({NO_BRIDGE_HINT})"
    return text

