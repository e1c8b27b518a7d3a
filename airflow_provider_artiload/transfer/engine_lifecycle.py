"""A Docker Engine's answers for retention and rollback (both image stores), beside ``engine.py``'s EngineTarget.

An engine cannot relabel an image, so a version's mark is a tag in its own
repository, ``<repository>:artiload-<UTC load time>`` (``docker images app``
shows it). The space freed is what ``GET /system/df`` says the layers take,
before and after.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence

from airflow_provider_artiload.engine.client import EngineClient
from airflow_provider_artiload.exceptions import EngineError, ImageNotFound
from airflow_provider_artiload.transfer import retention
from airflow_provider_artiload.transfer.retention import Version


class EngineLifecycle:
    """Marks, versions, containers and removal on one engine."""

    def __init__(self, client: EngineClient) -> None:
        self.client = client

    @property
    def url(self) -> str:
        return self.client.url

    # ---------------------------------------------------------------- marks

    def mark(self, image_id: str, tags: Sequence[str], log: logging.Logger) -> None:
        """Give ``image_id`` a fresh marker in each repository of ``tags``, then drop its older markers there.

        The new marker goes on first: a prune that listed the old ones can
        only take names it listed, so the version survives it. ImageNotFound
        if the image is gone (a Skip's claim: then it must be sent).
        """
        marker = retention.marker_tag(retention.now())
        for repository in retention.repositories(tags):
            self.client.tag_image(image_id, f"{repository}:{marker}")
            log.info("%s: marked %s as %s:%s", self.url, image_id[:19], repository, marker)
            for name in self._names(image_id):
                split = retention.split_name(name)
                if split and split[0] == repository and split[1] != marker and retention.marker_time(split[1]):
                    self._untag(name)

    # ---------------------------------------------------------------- Lifecycle

    def pointed(self, tags: Sequence[str]) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for tag in tags:
            try:
                found[tag] = self.client.inspect_image(tag)["Id"]
            except ImageNotFound:
                found[tag] = None
        return found

    def versions(self, repository: str) -> list[Version]:
        repository = retention.repository_of(repository)
        ids = {s["Id"] for s in self.client.list_images(reference=_familiar(repository))}
        out = []
        for image_id in ids:
            try:
                inspect = self.client.inspect_image(image_id)
            except ImageNotFound:
                continue  # removed while we looked
            names = list(inspect.get("RepoTags") or [])
            ours, foreign, markers, times = [], [], [], []
            for name in names:
                split = retention.split_name(name)
                if split and split[0] == repository:
                    ours.append(name)
                    when = retention.marker_time(split[1])
                    if when:
                        markers.append(name)
                        times.append(when)
                else:
                    foreign.append(name)
            if times:
                out.append(Version(image_id, max(times), tuple(sorted(ours)), tuple(sorted(markers)),
                                   tuple(sorted(foreign)), inspect.get("Size")))
        return out

    def in_use(self, versions: Sequence[Version]) -> set[str]:
        used = {c.get("ImageID") for c in self.client.list_containers()}
        return {v.image_id for v in versions if v.image_id in used}

    def remove(self, versions: Sequence[Version], log: logging.Logger) -> tuple[list[Version], int]:
        """Untag each version's names in the repository, never forced; the engine deletes an image with its last name.

        Each name is checked again just before it goes: one a load moved to
        another image since the listing (``latest``) stays, and a version a
        load claimed meanwhile (a marker the listing did not see) keeps all.
        """
        before = self._layers_size()
        gone = []
        for version in versions:
            for name in version.names:
                now = self._names(version.image_id)
                if any(n not in version.markers and _is_marker(n) for n in now):
                    log.info("%s: kept %s: a load claimed it while pruning", self.url, version.image_id[:19])
                    break
                if name not in now:
                    continue  # moved to another image, or gone already
                try:
                    self._untag(name)
                except EngineError as exc:  # a container started on it meanwhile: the engine refuses (409)
                    log.warning("%s: kept %s: %s", self.url, name, exc)
            if not self._exists(version.image_id):
                gone.append(version)
        freed = max(0, before - self._layers_size()) if gone else 0
        return gone, freed

    def point(self, tag: str, version: Version) -> None:
        self.client.tag_image(version.image_id, tag)

    def free_space(self) -> tuple[int, str] | None:
        """The Engine API does not say; for an engine on this host (a unix socket), its ``DockerRootDir``'s file system."""
        if not self.url.startswith("unix://"):
            return None
        root = self.client.info().get("DockerRootDir")
        if not isinstance(root, str) or not os.path.isdir(root):
            return None  # e.g. a socket mounted into a container: the engine's disk is not ours to see
        return shutil.disk_usage(root).free, root

    # ---------------------------------------------------------------- helpers

    def _names(self, image_id: str) -> list[str]:
        try:
            return list(self.client.inspect_image(image_id).get("RepoTags") or [])
        except ImageNotFound:
            return []

    def _untag(self, name: str) -> None:
        try:
            self.client.remove_image(name)
        except ImageNotFound:
            pass  # gone already (a concurrent prune)

    def _exists(self, image_id: str) -> bool:
        try:
            self.client.inspect_image(image_id)
        except ImageNotFound:
            return False
        return True

    def _layers_size(self) -> int:
        """``/system/df``'s LayersSize. The engine runs one disk-usage count at a time and answers a second,
        concurrent one (another prune of the same engine) with 500 "already running": wait for it."""
        for attempt in range(50):
            try:
                return int(self.client.disk_usage().get("LayersSize") or 0)
            except EngineError as exc:
                if "already running" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.2)
        raise AssertionError("unreachable")


def _is_marker(name: str) -> bool:
    split = retention.split_name(name)
    return bool(split and retention.marker_time(split[1]))


def _familiar(repository: str) -> str:
    """``docker.io/library/app`` -> ``app``: the form the ``reference`` filter matches on every engine."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if repository.startswith(prefix):
            return repository[len(prefix):]
    return repository


__all__ = ["EngineLifecycle"]
