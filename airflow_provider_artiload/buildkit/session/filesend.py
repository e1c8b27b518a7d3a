"""FileSend: receive an exporter's output (``tar``, ``docker``, ``oci``) as a byte stream.

The daemon calls ``moby.filesync.v1.FileSend/DiffCopy`` and sends
BytesMessage chunks, then closes its side; we write each chunk straight to
the target (a file, an AtomicFile, anything with ``write``) and end the call.
Nothing is buffered beyond one chunk. A failing write ends the call with an
error, which fails the export; the error is kept in :attr:`error` so the
client can report it as ours (e.g. disk full), not as the daemon's echo.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from airflow_provider_artiload.buildkit._proto import filesync_pb2, filesync_pb2_grpc


class FileSend:
    """Writes the exported stream to ``target`` (an object with ``write(bytes)``)."""

    def __init__(self, target: Any, *, on_chunk: Callable[[int], None] | None = None) -> None:
        self.target = target
        self.on_chunk = on_chunk
        self.bytes = 0
        self.calls = 0
        self.error: BaseException | None = None
        self.done = threading.Event()

    def register(self, server) -> None:
        filesync_pb2_grpc.add_FileSendServicer_to_server(self, server)

    def DiffCopy(self, request_iterator, context) -> Iterator[filesync_pb2.BytesMessage]:  # noqa: N802
        self.calls += 1
        if self.calls > 1:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, "target already exists")
        try:
            for message in request_iterator:
                data = message.data
                if not data:
                    continue
                try:
                    self.target.write(data)
                except Exception as exc:  # noqa: BLE001 - reported by the client
                    self.error = exc
                    context.abort(grpc.StatusCode.INTERNAL, f"cannot write the export: {exc}")
                self.bytes += len(data)
                if self.on_chunk:
                    self.on_chunk(len(data))
        finally:
            self.done.set()
        return
        yield  # a generator: the response stream is empty
