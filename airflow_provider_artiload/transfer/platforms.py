"""Which image of a source each target takes: per-target platforms, one read for the whole fleet.

Every target knows its platform (an engine from ``/version`` and ``/info``,
a node from containerd's introspection, or the connection's ``platform``
extra). Before any byte moves, :func:`select` gives each target its view of
the source (a :class:`~.sources.SourceInfo`):

- **a multi-platform source** (an index listing several images): the image
  of the target's platform, by containerd's rules (:mod:`..oci.platform`),
  narrowed to it: its manifest, config and layers are all it is sent, and
  its identity is that manifest (the containerd store's ID) or its config
  (the classic store's). A target whose platform the source lacks fails
  alone, with :class:`PlatformMismatch` naming both, before anything is sent
  to it; the other targets go on. Skip and delta decide on that image;
- **a single-platform source**: loaded whatever its platform, as
  ``docker load`` does; a target of another platform gets one log line,
  and its outcome names both;
- ``LoadOptions.platform`` forces one platform on every target;
  ``LoadOptions.all_platforms`` keeps the whole index where the store can
  hold one (a containerd store, a node), and narrows elsewhere;
- **a stream** (another engine's or a node's export) lists its images only
  at its end: the target's platform goes along (``target_platform``) and
  the image is chosen there (:func:`..oci.reframe.chosen_platform`).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from airflow_provider_artiload.artifacts import LoadOutcome
from airflow_provider_artiload.exceptions import ArtiloadError
from airflow_provider_artiload.oci.image import Image
from airflow_provider_artiload.oci.manifests import choose, platforms_of
from airflow_provider_artiload.oci.platform import Platform, matches, parse
from airflow_provider_artiload.oci.reframe import chosen_platform, named_blobs
from airflow_provider_artiload.transfer.plan import LoadOptions, Streamed
from airflow_provider_artiload.transfer.sources import SourceInfo


class PlatformMismatch(ArtiloadError):
    """A multi-platform source has no image for a target's platform: nothing is loaded or tagged there."""


def select(info: SourceInfo, target: Platform | None, options: LoadOptions, *, where: str, store: str,
           log: logging.Logger) -> SourceInfo:
    """The source as one target sees it (see the module docstring); raises PlatformMismatch."""
    own = str(target) if target else None
    wanted = parse(options.platform, what="platform") if options.platform else target
    if options.all_platforms and store == "containerd" and not options.platform:
        return replace(info, target_platform=own)
    images = info.images
    if not images:  # a stream: chosen at its end
        return replace(info, target_platform=str(wanted) if wanted else None)
    if len(images) == 1:
        stated = images[0].platform
        if wanted is not None and stated is not None and not matches(wanted, stated) and not options.platform:
            log.warning("%s is %s but the source's only image is %s: loading it anyway, as docker load does",
                        where, wanted, stated)
        return replace(info, platform=str(stated) if stated else None, target_platform=own)
    if options.all_platforms and not options.platform:
        log.info("%s: a %s store holds one platform per image: loading %s's of %s", where, store,
                 wanted or "the first", platforms_of(images))
    chosen = choose(images, wanted) if wanted is not None else images[0]
    if chosen is None or chosen.platform is None or info.index is None:
        whose = f"the platform asked for, {wanted}" if options.platform else f"{where}'s platform, {wanted}"
        raise PlatformMismatch(
            f"{info.label} has no image for {whose} (it has {platforms_of(images)}); nothing was loaded or tagged "
            f"on {where}" + ("" if options.platform else ": build that platform too, or set the connection's platform extra")
        )
    image = replace(info.index.image(str(chosen.platform)), index_digest=None)
    return replace(
        info,
        image=image,
        ids={"classic": image.config_digest, "containerd": image.id_for("containerd")},
        diff_ids=image.diff_ids,
        blobs=named_blobs(info.index, image),
        # the artifact promised the index (checked for the whole read); this manifest is the one it lists
        expected_ids=frozenset({d for d in (image.manifest_digest,) if d}),
        platform=str(chosen.platform),
        target_platform=own,
        narrowed=True,
    )


def stream_target(info: SourceInfo, options: LoadOptions, store: str) -> str | None:
    """The platform a stream's image is chosen for at its end (None: the stream's as it is)."""
    if info.image is not None or not info.target_platform or (options.all_platforms and store == "containerd"):
        return None
    return info.target_platform


def chosen_image(info: SourceInfo, streamed: Streamed, target: str | None = None) -> Image | None:
    """The image a target was sent: its narrowed view's, or chosen from the checked stream for ``target``
    (:func:`stream_target`) as the reframer chose it."""
    if info.narrowed and info.image is not None:
        return info.image
    index = streamed.index
    if index is None or target is None:
        return streamed.image
    platform = chosen_platform(index, target)
    return replace(index.image(platform), index_digest=None) if platform else streamed.image


def described(outcome: LoadOutcome, info: SourceInfo | None, image: Image | None) -> LoadOutcome:
    """The outcome with the platform loaded, the target's own and the manifest digest."""
    platform = (info.platform if info else None) or (image.platform if image else None)
    if platform:
        try:
            platform = str(parse(platform))
        except ArtiloadError:
            pass
    manifest = image.manifest_digest if image else None
    if manifest is None and image is not None and image.index_digest is None:
        manifest = image.id_for("containerd")  # a legacy archive: the manifest containerd makes of it
    return replace(outcome, platform=platform, target_platform=info.target_platform if info else None,
                   manifest_digest=manifest)


__all__ = ["PlatformMismatch", "chosen_image", "described", "select", "stream_target"]
