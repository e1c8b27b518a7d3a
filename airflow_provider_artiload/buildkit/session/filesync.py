"""FileSync: send local directories (the build context, the Dockerfile's directory) to the daemon.

The daemon calls ``moby.filesync.v1.FileSync/DiffCopy`` once per directory,
naming it in the ``dir-name`` metadata along with ``include-patterns``,
``exclude-patterns`` (from .dockerignore) and ``followpaths``. We answer with
fsutil packets: one STAT per entry in :func:`walk` order (the i-th STAT is
file id i), an empty STAT to end the listing, then DATA chunks for each file
the daemon REQuests (an empty DATA ends a file), and FIN for FIN.

uid/gid are sent as 0, as BuildKit's Go client does for local directories.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import grpc

from airflow_provider_artiload.buildkit._proto import filesync_pb2_grpc, fsutil_pb2
from airflow_provider_artiload.buildkit.session.session import RequestReader
from airflow_provider_artiload.buildkit.context.walk import Entry, walk

log = logging.getLogger(__name__)

Packet = fsutil_pb2.Packet
DATA_CHUNK = 1 << 20  # below the daemon's 4 MiB receive limit; Go's sender uses 32 KiB
OVERRIDE_EXCLUDES = "override-excludes"


@dataclass
class SyncStats:
    """What one FileSync served, across all its calls (for logs and the no-data-on-rebuild test)."""

    calls: int = 0
    entries: int = 0
    files_requested: int = 0
    data_packets: int = 0
    data_bytes: int = 0
    started: float | None = None  # monotonic time of the first call
    finished: float | None = None  # monotonic time the last call ended

    @property
    def seconds(self) -> float:
        return (self.finished - self.started) if self.started is not None and self.finished is not None else 0.0


class FileSync:
    """Serves named local directories: ``{"context": "/path", "dockerfile": "/path"}``.

    :param excludes: per-directory exclude patterns that replace what the
        daemon sends (unless it sends ``override-excludes: true``), like the
        Go client's ``SyncedDir.Excludes``.
    """

    def __init__(self, dirs: Mapping[str, str], *, excludes: Mapping[str, list[str]] | None = None) -> None:
        self.dirs = dict(dirs)
        self.excludes = dict(excludes or {})
        self.stats = SyncStats()
        self._lock = threading.Lock()

    def register(self, server) -> None:
        filesync_pb2_grpc.add_FileSyncServicer_to_server(self, server)

    def DiffCopy(self, request_iterator, context) -> Iterator[Packet]:  # noqa: N802 - gRPC method name
        metadata: dict[str, list[str]] = {}
        for key, value in context.invocation_metadata():
            metadata.setdefault(key, []).append(value)
        name = (metadata.get("dir-name") or [""])[0]
        root = self.dirs.get(name)
        if root is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no access allowed to dir {name!r}")
        excludes = metadata.get("exclude-patterns", [])
        if self.excludes.get(name) and (metadata.get(OVERRIDE_EXCLUDES) or [""])[0] != "true":
            excludes = self.excludes[name]
        with self._lock:
            self.stats.calls += 1
            if self.stats.started is None:
                self.stats.started = time.monotonic()
        try:
            yield from self._serve(name, root, excludes, metadata, request_iterator, context)
        finally:
            with self._lock:
                self.stats.finished = time.monotonic()

    def _serve(self, name, root, excludes, metadata, request_iterator, context) -> Iterator[Packet]:
        reader = RequestReader(request_iterator, name=f"filesync-{name}")
        try:
            entries = walk(
                root,
                include_patterns=metadata.get("include-patterns", []),
                exclude_patterns=excludes,
                follow_paths=metadata.get("followpaths", []),
            )
        except (OSError, ValueError) as exc:
            yield Packet(type=Packet.PACKET_ERR, data=f"cannot read {name} directory {root}: {exc}".encode())
            return
        files: dict[int, str] = {}
        try:
            for index, entry in enumerate(entries):
                if entry.is_regular:
                    files[index] = entry.abspath
                yield Packet(type=Packet.PACKET_STAT, stat=_stat(entry))
        except OSError as exc:
            yield Packet(type=Packet.PACKET_ERR, data=f"cannot read {name} directory {root}: {exc}".encode())
            return
        with self._lock:
            self.stats.entries += len(files)
        yield Packet(type=Packet.PACKET_STAT)
        while True:
            packet = reader.get()
            if packet is RequestReader.END:
                return  # the daemon closed its side
            if packet.type == Packet.PACKET_REQ:
                path = files.pop(packet.ID, None)
                if path is None:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid file id {packet.ID}")
                yield from self._send_file(packet.ID, path)
            elif packet.type == Packet.PACKET_FIN:
                yield Packet(type=Packet.PACKET_FIN)
                return
            elif packet.type == Packet.PACKET_ERR:
                log.warning("BuildKit stopped reading %s: %s", name, packet.data.decode(errors="replace"))
                return

    def _send_file(self, file_id: int, path: str) -> Iterator[Packet]:
        packets = sent = 0
        try:
            handle = open(path, "rb", buffering=0)  # noqa: SIM115
        except OSError:
            handle = None  # like fsutil: a file that cannot be opened is sent empty
        if handle is not None:
            with handle:
                while chunk := handle.read(DATA_CHUNK):
                    packets += 1
                    sent += len(chunk)
                    yield Packet(type=Packet.PACKET_DATA, ID=file_id, data=chunk)
        with self._lock:
            self.stats.files_requested += 1
            self.stats.data_packets += packets
            self.stats.data_bytes += sent
        yield Packet(type=Packet.PACKET_DATA, ID=file_id)


def _stat(entry: Entry) -> fsutil_pb2.Stat:
    return fsutil_pb2.Stat(
        path=entry.wire_path,
        mode=entry.mode,
        uid=0,
        gid=0,
        size=entry.size,
        modTime=entry.mtime_ns,
        linkname=entry.wire_linkname,
        devmajor=entry.devmajor,
        devminor=entry.devminor,
        xattrs=entry.xattrs,
    )
