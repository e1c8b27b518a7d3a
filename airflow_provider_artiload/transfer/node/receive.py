"""Route an archive's blob members into the content store as they stream: skip what the node has, write the rest.

Which members are blobs, and their digests, decided at each member's header:

- ``blobs/sha256/<hex>`` (OCI layout, Docker 25+ saves): the name says.
- ``<v1 id>/layer.tar`` (legacy docker-archive): an uncompressed layer whose
  digest is its diff ID; known when the source was indexed (``info.image``)
  or placeable from the diff IDs (``layer_position``), else only once its
  bytes have passed (then it cannot be skipped, and is verified at the end).
- ``<hex>.json`` at the top (legacy config): the name says.

Everything else (``manifest.json``, ``index.json``, v1 ``json`` files) is
metadata the scanner keeps. Each written blob is committed under the load's
lease as soon as its member ends.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from airflow_provider_artiload.containerd.stream import BlobStream, ref_for
from airflow_provider_artiload.oci.archive import ArchiveIndex, Member
from airflow_provider_artiload.oci.layout import layer_position
from airflow_provider_artiload.oci.image import is_digest
from airflow_provider_artiload.transfer.sources import SourceInfo
from airflow_provider_artiload.exceptions import ArtiloadError

if TYPE_CHECKING:
    from airflow_provider_artiload.containerd.client import ContainerdClient

_CONFIG_NAME = re.compile(r"[0-9a-f]{64}\.json")


@dataclass
class Received:
    """What the stream did: per digest, whether it was written (bytes sent) or found on the node."""

    written: dict[str, int] = field(default_factory=dict)  # digest -> data bytes sent now
    present: set[str] = field(default_factory=set)  # digests the node had: their bytes were not sent
    digests: dict[str, str] = field(default_factory=dict)  # member name -> digest (known, or hashed on the way)

    @property
    def sent(self) -> int:
        return sum(self.written.values())

    def on_node(self, digest: str) -> bool:
        return digest in self.written or digest in self.present


class BlobReceiver:
    """Consumes :func:`member_events`; ``needed`` (digests), when known, limits writes to one image's blobs."""

    def __init__(self, client: ContainerdClient, info: SourceInfo, needed: frozenset[str] | None = None) -> None:
        self.client = client
        self.info = info
        self.needed = needed
        self.result = Received()
        self._by_path = {layer.path: layer.digest for layer in info.image.layers} if info.image else {}
        self._stream: BlobStream | None = None
        self._lock: contextlib.ExitStack | None = None

    def on(self, kind: str, member: Member, piece: memoryview | None, index: ArchiveIndex) -> None:
        if kind == "start":
            self._start(member, index)
        elif self._stream is None:
            return
        elif kind == "data":
            assert piece is not None
            self._stream.push(piece)
        else:
            self._end(member)

    def _start(self, member: Member, index: ArchiveIndex) -> None:
        blob, digest = self._digest_of(member.name, index)
        if not blob:
            return
        if digest is not None:
            self.result.digests[member.name] = digest
            if self.needed is not None and digest not in self.needed:
                return  # another platform's blob
            if digest in self.result.written or self.client.content.info(digest) is not None:
                self.client.leases.protect(digest)  # ours now, within this load's lease
                self.result.present.add(digest)
                return
        ref = ref_for(digest, member.name, member.size)
        self._lock = contextlib.ExitStack()
        self._lock.enter_context(self.client.content.ref_lock(ref))  # one writer per ref in this process (1.6)
        stream = BlobStream(self.client.content, ref, member.size, digest, what=f"blob {member.name}")
        stream.open()
        if stream.exists and digest is not None:  # a concurrent load committed it just now
            self._release()
            self.result.present.add(digest)
            return
        self._stream = stream

    def _end(self, member: Member) -> None:
        stream, self._stream = self._stream, None
        assert stream is not None
        try:
            digest = stream.finish_data()
        finally:
            self._release()
        stream.commit(digest)
        self.result.digests[member.name] = digest
        if stream.exists:
            self.result.present.add(digest)
        else:
            self.result.written[digest] = self.result.written.get(digest, 0) + stream.sent

    def abandon(self, *, resumable: bool = True) -> None:
        """The load failed mid-member: stop its write.

        After a cut (the node's connection, the source's stream) what
        containerd holds stays under the ref, and a retry resumes from it. When
        the archive itself is bad (``resumable=False``) nothing will resume it:
        the partial write is aborted, so no ingest is left behind.
        """
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.abandon()
            if not resumable:
                self._abort(stream.ref)
        self._release()

    def _abort(self, ref: str) -> None:
        try:
            self.client.content.abort(ref)
        except ArtiloadError:
            pass  # the load's own error says more; containerd expires an unleased ingest within 24 hours

    def _release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()

    def _digest_of(self, name: str, index: ArchiveIndex) -> tuple[bool, str | None]:
        """(is it a blob, its digest if known at its header)."""
        if name.startswith("blobs/sha256/"):
            digest = "sha256:" + name.rsplit("/", 1)[-1]
            return (True, digest) if is_digest(digest) else (False, None)
        if name == "layer.tar" or name.endswith("/layer.tar"):
            if name in self._by_path:
                return True, self._by_path[name]
            position = layer_position(name, index, self.info.diff_ids) if self.info.diff_ids else None
            return True, self.info.diff_ids[position] if position is not None else None
        if _CONFIG_NAME.fullmatch(name):
            return True, "sha256:" + name[:-5]
        return False, None


__all__ = ["BlobReceiver", "Received"]
