"""EngineTarget and EngineSource: a Docker Engine (classic or containerd image store) to load into and read from.

It plans from what the engine holds: the image itself (by the ID its store
gives it: skip), or the chains of the bottom layers (a thin archive without
them). It uploads through ``POST /images/load``, leaving out the blobs it
holds and adding a ``manifest.json`` for a classic store that needs one, and
concludes only once the engine has the image under the expected ID.

What it records unchecked (:attr:`Send.unchecked`), for the checks on our side:
a classic store skips the layers whose chains it has without reading them;
the containerd store records the image (and the archive's own tags) before it
unpacks, so every layer bound for it is checked before the archive's end.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence

from airflow_provider_artiload.engine.client import EngineClient
from airflow_provider_artiload.exceptions import ArchiveError, ArtiloadError, EngineError, ImageNotFound
from airflow_provider_artiload.oci.archive import ArchiveIndex, ArchiveScanner
from airflow_provider_artiload.oci.image import chain_ids, store_of
from airflow_provider_artiload.oci.layout import layer_position
from airflow_provider_artiload.oci.tar import build_member
from airflow_provider_artiload.artifacts import LoadOutcome
from airflow_provider_artiload.transfer.engine_lifecycle import EngineLifecycle
from airflow_provider_artiload.transfer.sources import SourceInfo
from airflow_provider_artiload.transfer.plan import (
    LoadOptions,
    Plan,
    Refused,
    Send,
    Skip,
    Streamed,
    Unreachable,
    tagged_outcome,
)


class EngineTarget:
    """Loads into one Docker Engine through its API client."""

    def __init__(self, client: EngineClient) -> None:
        self.client = client

    @property
    def url(self) -> str:
        return self.client.url

    @property
    def lifecycle(self) -> EngineLifecycle:
        """Marks, retention and rollback on this engine (``transfer/retention.py``)."""
        return EngineLifecycle(self.client)

    def plan(self, info: SourceInfo, options: LoadOptions, log: logging.Logger) -> Plan:
        """Ask the engine what it has, and decide."""
        try:
            store = store_of(self.client.info())
            target_id = info.id_for(store)
            if options.skip_existing and target_id and self.has_image(target_id) and self._claimed(target_id, options, log):
                log.info("%s already has %s: no layer bytes sent", self.url, target_id)
                return Skip(self, store, target_id)
            have = layers_present(self.client, info.diff_ids) if info.diff_ids else 0
        except ArtiloadError as exc:
            return Unreachable(self, exc)
        every = frozenset(range(len(info.diff_ids)))
        full = Send(self, store, have=have, add_manifest=store == "classic" and not info.has_legacy_manifest,
                    unchecked=every if store == "containerd" else frozenset(range(have)))
        names = info.layer_names
        thinnable = not info.compressed and (names is not None or info.placeable)  # a gzip stream cannot be thinned
        if not (thinnable and options.delta and have):
            return full
        if names is None:  # a stream: identified member by member as it passes
            omit = frozenset({f"#{position}" for position in range(have)})
        else:
            omit = frozenset(names[:have]) - frozenset(names[have:])
        log.info("%s has %d of %d layers: sending the other %d", self.url, have, len(info.diff_ids), len(info.diff_ids) - have)
        thin_unchecked = every if store == "containerd" else frozenset()
        return Send(self, store, have=have, omit=omit, add_manifest=full.add_manifest, unchecked=thin_unchecked,
                    fallback=full)

    def _claimed(self, image_id: str, options: LoadOptions, log: logging.Logger) -> bool:
        """With retention on, mark the image before skipping: a prune racing us cannot take it from then on."""
        if not (options.mark and options.tags):
            return True
        try:
            self.lifecycle.mark(image_id, options.tags, log)
        except ImageNotFound:
            return False  # pruned since we looked: send it
        return True

    def has_image(self, image_id: str) -> bool:
        """Does the engine hold exactly this image (its ``Id`` is ``image_id``)?"""
        try:
            return self.client.inspect_image(image_id)["Id"] == image_id
        except ImageNotFound:
            return False

    def tag(self, image_id: str, tag: str) -> None:
        self.client.tag_image(image_id, tag)

    def upload(self, send: Send, chunks: Iterator[bytes], info: SourceInfo, options: LoadOptions,
               log: logging.Logger) -> int:
        """Stream the archive into ``POST /images/load``; the bytes sent."""
        sent = 0

        def counted() -> Iterator[bytes]:
            nonlocal sent
            for piece in _filter(chunks, send, info, options):
                sent += len(piece)
                yield piece

        self.client.load_image(counted())
        return sent

    def conclude(self, send: Send, uploaded: object, streamed: Streamed, info: SourceInfo, options: LoadOptions,
                 log: logging.Logger) -> LoadOutcome | Refused | BaseException:
        image = streamed.image
        target_id = image.id_for(send.store) if image else None
        if not isinstance(uploaded, BaseException) and target_id and self.has_image(target_id):
            assert image is not None and isinstance(uploaded, int)
            layers = (send.have if send.omit else 0, len(info.diff_ids) or len(image.layers))
            if options.mark and (options.tags or image.repo_tags):
                self.lifecycle.mark(target_id, options.tags or image.repo_tags, log)
            return tagged_outcome(self, target_id, send.mode, options, log, sent=uploaded, seconds=streamed.seconds,
                                  layers=layers, archive_tags=list(image.repo_tags))
        if send.fallback is not None and not isinstance(uploaded, ArchiveError):
            return Refused(send.fallback, str(uploaded or "the image is missing afterwards"))
        if isinstance(uploaded, BaseException):
            return uploaded
        return EngineError(f"{self.url}: the load reported success but the engine has no image {target_id}")

    def close(self) -> None:
        self.client.close()


class EngineSource:
    """An image streamed straight out of another engine (``GET /images/{name}/get``)."""

    def __init__(self, client: EngineClient, image: str) -> None:
        self.client = client
        self.image = image

    def info(self) -> SourceInfo:
        inspect = self.client.inspect_image(self.image)
        store = store_of(self.client.info())
        return SourceInfo(
            label=f"{self.image} on {self.client.url}",
            expected_ids=frozenset({inspect["Id"]}),
            ids={store: inspect["Id"]},
            diff_ids=list(inspect.get("RootFS", {}).get("Layers") or []),
            size=inspect.get("Size"),
            has_legacy_manifest=True,  # every engine's save writes manifest.json
            # the containerd store exports gzip blobs named by their compressed digest, manifests last:
            # which blob is which layer is known only at the end, too late to leave any out
            placeable=store == "classic",
        )

    @contextlib.contextmanager
    def open(self, omit: frozenset[str] = frozenset()) -> Iterator[Iterator[bytes]]:
        """The export stream; a stream cannot skip, so every target filters for itself."""
        with self.client.export_image(self.image) as chunks:
            yield chunks


def _filter(chunks: Iterable[bytes], send: Send, info: SourceInfo, options: LoadOptions) -> Iterator[bytes]:
    """Leave out the blobs the engine has; add a manifest.json for an engine that needs one."""
    if not send.omit and not send.add_manifest:
        yield from chunks
        return

    def keep(name: str, index: ArchiveIndex) -> bool:
        if not send.omit:
            return True
        if info.layer_names is not None:
            return name not in send.omit
        position = layer_position(name, index, info.diff_ids)
        return position is None or position >= send.have

    def manifest(index: ArchiveIndex) -> bytes:
        if not send.add_manifest or "manifest.json" in index.members:
            return b""
        return build_member("manifest.json", index.image(options.platform).legacy_manifest())

    scanner = ArchiveScanner(keep=keep, at_end=manifest)
    for chunk in chunks:
        yield from (piece for piece in scanner.feed(chunk) if piece)
    yield from (piece for piece in scanner.end_pieces() if piece)
    scanner.finish()


def present_chains(client: EngineClient) -> set[str]:
    """Every layer chain the engine holds, from its images' root filesystems."""
    chains: set[str] = set()
    for summary in client.list_images():
        try:
            layers = client.inspect_image(summary["Id"]).get("RootFS", {}).get("Layers") or []
        except ImageNotFound:
            continue  # removed while we looked
        chains.update(chain_ids(layers))
    return chains


def layers_present(client: EngineClient, diff_ids: Sequence[str]) -> int:
    """How many of the image's bottom layers the engine already has.

    Having chain n implies having every chain below it, so what an engine
    lacks is always a suffix of the image's layers.
    """
    have = present_chains(client)
    count = 0
    for chain in chain_ids(diff_ids):
        if chain not in have:
            break
        count += 1
    return count
