"""EngineTarget and EngineSource: a Docker Engine (classic or containerd image store) to load into and read from.

It plans from what the engine holds: the image itself (by the ID its store
gives it: skip), or the chains of the bottom layers (a thin archive without
them). It uploads through ``POST /images/load`` a tar artiload wrote
(:mod:`airflow_provider_artiload.oci.reframe`: the checked blobs, byte for
byte, and metadata made from the checked model, with a ``manifest.json``
for every store), leaving out the blobs it holds, and concludes only once
the engine has the image under the expected ID, whole: a containerd store
must hold every blob of it (:meth:`EngineTarget.whole`). A load into that
store is sent unnamed and named only once whole; a thin one that is not is
removed and redone in full.

What it leaves to us (:attr:`Send.unchecked`, :attr:`Send.unchecked_blobs`),
for the checks on our side: a classic store checks the diff ID of each layer
it registers, but skips the layers whose chains it has without reading them.
The containerd store files each blob under the digest of the bytes it got,
not the one its name claims, and records the image before it unpacks; the
unpack then checks each new layer's diff ID, skipping the chains it has
(Docker 28.5). So for it every blob digest is checked here, before the
archive's end (a corrupt blob is refused before the engine has it all, and
never sent twice); and, where that unpack can be relied on (API 1.48+, the
image of its own platform), the archive goes in unnamed and only the diff
IDs of the layers it will not unpack are checked here: a wrong one is its
unpack's "wrong diff id", after which the unnamed record is removed
(:meth:`EngineTarget._forget`) and no tag moved. Elsewhere every diff ID is
checked here too.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from functools import cached_property
from typing import Any

from airflow_provider_artiload.engine.client import EngineClient
from airflow_provider_artiload.exceptions import (
    ArchiveError,
    ArtiloadError,
    ConnectError,
    DigestMismatch,
    EngineError,
    ImageNotFound,
    TransferError,
)
from airflow_provider_artiload.oci.digests import DIFF_ID, mismatch
from airflow_provider_artiload.oci.image import Image, chain_ids, store_of
from airflow_provider_artiload.oci.layout import layer_position
from airflow_provider_artiload.oci.reframe import Framing, reframe
from airflow_provider_artiload.artifacts import LoadOutcome
from airflow_provider_artiload.transfer.engine_lifecycle import EngineLifecycle
from airflow_provider_artiload.oci.platform import Platform, matches, of_engine, parse
from airflow_provider_artiload.transfer.platforms import chosen_image, select, stream_target
from airflow_provider_artiload.transfer.retention import claim_before_skip
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

WRONG_DIFF_ID = re.compile(r'wrong diff id calculated on extraction \\?"(sha256:[0-9a-f]{64})')


class EngineTarget:
    """Loads into one Docker Engine through its API client."""

    def __init__(self, client: EngineClient, *, platform: str | None = None) -> None:
        """``platform``: what the engine's connection says it is (its ``platform`` extra); else it is asked."""
        self.client = client
        self._platform = platform
        self._detected: Platform | None = None

    @property
    def url(self) -> str:
        return self.client.url

    @property
    def platform(self) -> Platform | None:
        """The engine's platform: its connection's ``platform`` extra, else ``/version`` and ``/info`` (once)."""
        if self._platform:
            return parse(self._platform, what=f"{self.url}: platform")
        return self.own_platform

    @property
    def own_platform(self) -> Platform | None:
        """What the engine says it runs on (``/version`` and ``/info``): what its store unpacks."""
        if self._detected is None:
            self._detected = of_engine(self._version, self._info)
        return self._detected

    @cached_property
    def _version(self) -> dict[str, Any]:
        """``/version``, asked once: the plan reads it twice (platform, API level), and with eight targets on
        two cores each extra request holds every upload back, since they all start once every plan is made."""
        return self.client.version()

    @cached_property
    def _info(self) -> dict[str, Any]:
        """``/info``, asked once (image store and platform): a target serves one task, where neither changes."""
        return self.client.info()

    @property
    def lifecycle(self) -> EngineLifecycle:
        """Marks, retention and rollback on this engine (``transfer/retention.py``)."""
        return EngineLifecycle(self.client)

    def plan(self, info: SourceInfo, options: LoadOptions, log: logging.Logger) -> Plan:
        """Ask the engine what it has, and decide."""
        try:
            store = store_of(self._info)
            info = select(info, self.platform, options, where=self.url, store=store, log=log)  # its platform's image
            target_id = info.id_for(store)
            present = bool(target_id) and self.has_image(target_id)
            whole = present and self.whole(store, target_id, info.image.manifest_digest if info.image else None) is not False
            if options.skip_existing and present and whole and claim_before_skip(self.lifecycle, target_id, options, log):
                log.info("%s already has %s: no layer bytes sent", self.url, target_id)
                return Skip(self, store, target_id, info=info)
            if present and not whole:
                log.warning("%s holds %s without all its content: sending it in full", self.url, target_id)
            have = layers_present(self.client, info.diff_ids) if info.diff_ids else 0
            # the containerd store must hold a left-out blob under its digest, not only its snapshot:
            # thin only where the engine can say afterwards whether the image is whole
            provable = store == "classic" or self._reports_manifests()
        except ArtiloadError as exc:
            return Unreachable(self, exc)
        every = frozenset(range(len(info.diff_ids)))
        # what the engine leaves to us (module docstring): where it checks the layers it takes, the ones it has
        checks_taken = store == "classic" or (provable and self._unpacks(info, options))
        blobs = every if store == "containerd" else frozenset()
        full = Send(self, store, have=have, add_manifest=store == "classic" and not info.has_legacy_manifest,
                    unchecked=frozenset(range(have)) if checks_taken else every, unchecked_blobs=blobs, present=present,
                    info=info)
        names = info.layer_names
        thinnable = names is not None or info.placeable
        if not (thinnable and options.delta and have and provable and not (present and not whole)):
            return full
        if names is None:  # a stream: identified member by member as it passes
            omit = frozenset({f"#{position}" for position in range(have)})
        else:
            omit = frozenset(names[:have]) - frozenset(names[have:])
        log.info("%s has %d of %d layers: sending the other %d", self.url, have, len(info.diff_ids), len(info.diff_ids) - have)
        return Send(self, store, have=have, omit=omit, add_manifest=full.add_manifest,
                    unchecked=frozenset() if checks_taken else every, unchecked_blobs=blobs, present=present,
                    fallback=full, info=info)

    def _unpacks(self, info: SourceInfo, options: LoadOptions) -> bool:
        """Will a containerd store unpack the image it is sent, checking each new layer's diff ID as it applies it?

        It unpacks only the image of its own platform, as it reports it (not
        the connection's ``platform`` extra, which chooses what it is sent).
        An image kept with every platform's (``all_platforms``), or whose
        platform is known only at the end of a stream (another engine's
        export), is checked here.
        """
        if options.all_platforms:
            return False
        own, stated = self.own_platform, info.platform
        try:
            return own is not None and stated is not None and matches(own, parse(stated))
        except ArtiloadError:
            return False

    def _reports_manifests(self) -> bool:
        """Does the engine report each manifest's availability (API 1.48+, Docker 28)?"""
        try:
            version = str(self._version.get("ApiVersion") or "0.0")
        except EngineError:
            return False
        major, _, minor = version.partition(".")
        return (int(major or 0), int(minor or 0)) >= (1, 48) if (major + minor).isdigit() else False

    def whole(self, store: str, image_id: str, manifest_digest: str | None) -> bool | None:
        """Does the engine hold every blob of the image (None: it cannot say)?

        A classic store keeps layers, not blobs: an image it lists is whole.
        The containerd store can record an image whose content it lacks (a
        thin archive left out a blob it held only as a snapshot); since API
        1.48 it reports each manifest's ``Available``: the image's own
        manifest (``manifest_digest``, else the image ID's) must be.
        """
        if store == "classic":
            return True
        try:
            manifests = self.client.image_manifests(image_id)
        except ImageNotFound:
            return False
        if manifests is None:
            return None
        wanted = manifest_digest or image_id
        own = [m for m in manifests if isinstance(m, dict) and m.get("ID") == wanted]
        if not own:
            own = [m for m in manifests if isinstance(m, dict) and m.get("Kind") == "image"]
        return any(m.get("Available") is True for m in own)

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
        framing = Framing(
            blobs=info.blobs,
            omit=send.omit,
            position=lambda name, index: layer_position(name, index, info.diff_ids),
            platform=info.platform if info.narrowed else options.platform,
            single=info.narrowed,  # one platform of a multi-platform source: its manifest, not the index
            target=stream_target(info, options, send.store),
            # a load into the containerd store is named only once it proved whole (conclude)
            named=send.store != "containerd",
        )

        def counted() -> Iterator[bytes | memoryview]:
            nonlocal sent
            for piece in reframe(chunks, framing):
                sent += len(piece)
                yield piece

        self.client.load_image(counted())
        return sent

    def conclude(self, send: Send, uploaded: object, streamed: Streamed, info: SourceInfo, options: LoadOptions,
                 log: logging.Logger) -> LoadOutcome | Refused | BaseException:
        image = chosen_image(info, streamed, stream_target(info, options, send.store))
        target_id = image.id_for(send.store) if image else None
        if not isinstance(uploaded, BaseException) and target_id and self.has_image(target_id):
            assert image is not None and isinstance(uploaded, int)
            if self.whole(send.store, target_id, image.manifest_digest) is False:
                return self._incomplete(send, target_id, log)
            if send.store == "containerd":  # sent unnamed: name it now that it is whole
                for tag in image.repo_tags:
                    self.tag(target_id, tag)
            layers = (send.have if send.omit else 0, len(info.diff_ids) or len(image.layers))
            if options.mark and (options.tags or image.repo_tags):
                self.lifecycle.mark(target_id, options.tags or image.repo_tags, log)
            return tagged_outcome(self, target_id, send.mode, options, log, sent=uploaded, seconds=streamed.seconds,
                                  layers=layers, archive_tags=list(image.repo_tags))
        if not isinstance(uploaded, (TransferError, ConnectError)):  # cut or unreachable: the engine kept nothing
            self._forget(send, target_id, log)
        if send.fallback is not None and not isinstance(uploaded, ArchiveError):
            return Refused(send.fallback, str(uploaded or "the image is missing afterwards"))
        if send.store == "containerd" and not send.retried and _lost_content(uploaded):
            return Refused(replace(send, retried=True), str(uploaded))
        if isinstance(uploaded, DigestMismatch) and image is not None:
            return _unpack_refusal(uploaded, image, send.have, info.label, self.url)
        if isinstance(uploaded, BaseException):
            return uploaded
        return EngineError(f"{self.url}: the load reported success but the engine has no image {target_id}")

    def _incomplete(self, send: Send, target_id: str, log: logging.Logger) -> Refused | BaseException:
        """The engine recorded the image without all its content: remove our unnamed record, redo the load in full."""
        message = f"{self.url}: the engine recorded {target_id} but lacks some of its content"
        self._forget(send, target_id, log)
        if send.fallback is None:
            return EngineError(message + " after a full load")
        return Refused(send.fallback, message)

    def _forget(self, send: Send, target_id: str | None, log: logging.Logger) -> None:
        """Remove the record a failed load into the containerd store made: unnamed, and not one held before.

        That store records the image before it unpacks (module docstring), so
        a layer its unpack refused leaves a record behind; a load into it is
        sent unnamed, so no tag moved, and this removes the record itself.
        """
        if send.store != "containerd" or send.present or not target_id:
            return
        try:
            if not self.client.inspect_image(target_id).get("RepoTags"):  # named since: someone else's load
                self.client.remove_image(target_id)
                log.info("%s: removed the image record %s the failed load left", self.url, target_id)
        except ImageNotFound:
            pass
        except ArtiloadError as exc:  # the load's own error is the one to report
            log.warning("%s: could not remove the unnamed record %s a failed load may have left: %s",
                        self.url, target_id, exc)

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


def _unpack_refusal(error: DigestMismatch, image: Image, skipped: int, label: str, url: str) -> DigestMismatch:
    """A containerd store's "wrong diff id calculated on extraction", told as our own checks tell a mismatch.

    The engine names the diff ID it computed, not the layer: the layer is
    named when only one was unpacked (the ``skipped`` bottom ones it had).
    """
    found = WRONG_DIFF_ID.search(str(error))
    unpacked = image.layers[skipped:]
    if found is None or not unpacked:
        return error
    verdict = f"corrupt; {url} found it as it unpacked the layer, and kept nothing"
    if len(unpacked) == 1:
        layer = unpacked[0]
        return mismatch(f"layer {layer.path or layer.digest}", f"sha256 {found.group(1)} uncompressed",
                        f"{DIFF_ID} {layer.diff_id}", where=label, verdict=verdict)
    return mismatch(f"one of the layers {', '.join(layer.path or str(layer.digest) for layer in unpacked)}",
                    f"sha256 {found.group(1)} uncompressed", "the image config gives it another diff ID", where=label,
                    verdict=verdict)


def _lost_content(error: object) -> bool:
    """The containerd store found a blob present, did not write it, then lost it to its collector while it
    unpacked: a blob of an image removed just before ("content digest ... not found"). Loading again works:
    the collector has taken the blob by then, so it is written this time."""
    text = str(error) if isinstance(error, EngineError) else ""
    return "content digest" in text and "not found" in text


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
