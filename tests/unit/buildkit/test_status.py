"""Status rendering in the --progress=plain format, from constructed StatusResponse messages."""

from __future__ import annotations

from airflow_provider_artiload.buildkit._proto import control_pb2
from airflow_provider_artiload.buildkit.status import StatusPrinter, describe_failure


class ListLog:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, fmt: str, *args: object) -> None:
        self.lines.append(fmt % args)


def ts(seconds: float):
    from google.protobuf.timestamp_pb2 import Timestamp

    t = Timestamp()
    t.FromNanoseconds(int(seconds * 1e9))
    return t


def test_steps_logs_cached_and_durations():
    log = ListLog()
    printer = StatusPrinter(log)
    V = control_pb2.Vertex
    printer.feed(control_pb2.StatusResponse(vertexes=[V(digest="a", name="[1/2] FROM base", started=ts(10), completed=ts(10), cached=True)]))
    printer.feed(control_pb2.StatusResponse(vertexes=[V(digest="b", name="[2/2] RUN echo hi", started=ts(11))]))
    printer.feed(
        control_pb2.StatusResponse(
            logs=[
                control_pb2.VertexLog(vertex="b", timestamp=ts(11.25), stream=1, msg=b"hel"),
                control_pb2.VertexLog(vertex="b", timestamp=ts(11.5), stream=1, msg=b"lo\nworld\n"),
            ],
            statuses=[control_pb2.VertexStatus(ID="transferring", vertex="b", current=2048, completed=ts(11.6))],
            vertexes=[V(digest="b", name="[2/2] RUN echo hi", started=ts(11), completed=ts(11.44))],
        )
    )
    assert log.lines == [
        "#1 [1/2] FROM base",
        "#1 CACHED",
        "#2 [2/2] RUN echo hi",
        "#2 transferring 2.05kB done",
        "#2 0.500 hello",
        "#2 0.500 world",
        "#2 DONE 0.4s",
    ]


def test_failure_names_the_step_and_its_last_lines():
    log = ListLog()
    printer = StatusPrinter(log)
    V = control_pb2.Vertex
    printer.feed(control_pb2.StatusResponse(vertexes=[V(digest="x", name="[2/2] RUN make", started=ts(1))]))
    printer.feed(
        control_pb2.StatusResponse(
            logs=[control_pb2.VertexLog(vertex="x", timestamp=ts(2), stream=2, msg=b"cc: error\nno newline")],
        )
    )
    printer.feed(
        control_pb2.StatusResponse(
            vertexes=[V(digest="x", name="[2/2] RUN make", started=ts(1), completed=ts(3), error="exit code: 2")]
        )
    )
    failed = printer.failed()
    assert failed is not None and failed.number == 1
    text = describe_failure(failed, "daemon says no")
    assert text.startswith("step #1 [2/2] RUN make failed: exit code: 2")
    assert "  cc: error" in text and "  no newline" in text
    assert log.lines[-1] == "#1 ERROR: exit code: 2"
    assert describe_failure(None, "plain") == "plain"
