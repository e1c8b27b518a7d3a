"""The subset of the Docker Engine API artiload needs, streaming both ways."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from urllib.parse import urlencode
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_artiload.engine import http as h
from airflow_provider_artiload.oci.reference import parse_reference
from airflow_provider_artiload.exceptions import DigestMismatch, EngineError, ImageNotFound, TransferError
from airflow_provider_artiload.transport import Dialer, Stream

UNPACK_FAILED = "Error unpacking image"
# What the engine's in-band load errors mean, for a message a user can act on.
LOAD_ERROR_HINTS = {
    "unexpected EOF": "the archive is truncated",
    "invalid tar header": "the file is not a tar archive",
    "invalid diffID": "a layer's bytes do not match its diff ID (corrupt archive)",
    "repositories: no such file": "the archive has no manifest.json (not a docker-archive)",
}


@dataclass(frozen=True)
class LoadResult:
    """What the engine reported after ``POST /images/load``."""

    names: list[str] = field(default_factory=list)  # "Loaded image: repo:tag"
    image_ids: list[str] = field(default_factory=list)  # "Loaded image ID: sha256:..."


class EngineClient:
    """A Docker Engine client over any Dialer (unix, TCP+TLS, SSH)."""

    def __init__(self, dialer: Dialer, *, timeout: float = 60.0, transfer_timeout: float = 300.0) -> None:
        self.dialer = dialer
        self.timeout = timeout
        self.transfer_timeout = transfer_timeout
        self._active: set[h.EngineConnection] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.dialer.url

    def ping(self) -> str:
        return self._get_text("/_ping", what="ping")

    def version(self) -> dict[str, Any]:
        return self._get_json("/version", what="version")

    def info(self) -> dict[str, Any]:
        return self._get_json("/info", what="info")

    def list_images(self, *, reference: str | None = None) -> list[dict[str, Any]]:
        """``GET /images/json``: summaries of the tagged and dangling images (only ``reference``'s, if given)."""
        query = {"filters": h.json.dumps({"reference": [reference]})} if reference else None
        return self._get_json(h.path("/images/json", query=query), what="list images")

    def list_containers(self) -> list[dict[str, Any]]:
        """``GET /containers/json?all=1``: every container, running or stopped (``ImageID`` is what it uses)."""
        return self._get_json("/containers/json?all=1", what="list containers")

    def disk_usage(self) -> dict[str, Any]:
        """``GET /system/df``: ``LayersSize`` (what the image layers take), images, containers."""
        return self._get_json("/system/df", what="system df")

    def inspect_image(self, image: str) -> dict[str, Any]:
        """``GET /images/{name}/json``; ImageNotFound names the image and the engine.

        An image removed while the engine reads it answers 500 "layer does not
        exist" on Docker 20.10 (seen when a prune races a load): that image is
        gone as surely as after a 404.
        """
        try:
            return self._get_json(h.path("/images/{}/json", image), what=f"inspect image {image!r}")
        except EngineError as exc:
            if exc.status == 500 and "layer does not exist" in str(exc):
                raise ImageNotFound(str(exc), status=exc.status) from exc
            raise

    def image_manifests(self, image: str) -> list[dict[str, Any]] | None:
        """``GET /images/{name}/json?manifests=1`` (API 1.48+, containerd store): each manifest's ``Available``, ``Kind``;
        None where the engine does not report them."""
        reply = self._get_json(h.path("/images/{}/json", image, query={"manifests": 1}), what=f"inspect image {image!r}")
        manifests = reply.get("Manifests")
        return manifests if isinstance(manifests, list) else None

    def tag_image(self, image: str, reference: str) -> None:
        """Point ``reference`` (validated first) at ``image``."""
        repository, tag = parse_reference(reference)
        with self._request("POST", h.path("/images/{}/tag", image, query={"repo": repository, "tag": tag})) as r:
            h.raise_for_status(r, where=self.url, what=f"tag {image!r} as {reference!r}")
            r.read()

    def remove_image(self, image: str, *, force: bool = False) -> None:
        with self._request("DELETE", h.path("/images/{}", image, query={"force": int(force)})) as r:
            h.raise_for_status(r, where=self.url, what=f"remove image {image!r}")
            r.read()

    @contextlib.contextmanager
    def export_image(self, image: str, *, platforms: Iterable[Mapping[str, str]] = ()) -> Iterator[Iterator[bytearray]]:
        """``GET /images/{name}/get`` as a one-pass iterator of 1 MiB pieces (a docker-archive).

        ``platforms``: only these platforms' images of a multi-platform image (the ``platform`` query, OCI
        platform JSON, one per platform; API 1.48+); none: what the engine saves by default (every platform).
        """
        request = h.path("/images/{}/get", image)
        if platforms:
            request += "?" + urlencode([("platform", json.dumps(dict(p), separators=(",", ":"))) for p in platforms])
        with self._request("GET", request, timeout=self.transfer_timeout) as response:
            h.raise_for_status(response, where=self.url, what=f"save image {image!r}")
            yield h.body_pieces(response)

    def load_image(
        self, archive: Iterable[bytes], *, on_status: Callable[[dict[str, Any]], None] | None = None
    ) -> LoadResult:
        """``POST /images/load`` with a chunked body; raises on in-band errors.

        If ``archive`` raises (a digest or format check failed), the request
        body is never terminated and the connection is torn down, so the
        engine discards what it got and loads nothing.
        """
        names: list[str] = []
        image_ids: list[str] = []
        with self._request(
            "POST",
            "/images/load?quiet=0",
            body=h.chunked(archive),
            headers={"Content-Type": "application/x-tar", "Transfer-Encoding": "chunked"},
            timeout=self.transfer_timeout,
        ) as response:
            h.raise_for_status(response, where=self.url, what="load")
            for message in h.json_lines(response):
                if message.get("error") or message.get("errorDetail"):
                    explained = _explain(message)
                    if "invalid diffID" in explained:  # the archive is corrupt: no retry can help
                        raise DigestMismatch(f"{self.url}: load failed: {explained}")
                    raise EngineError(f"{self.url}: load failed: {explained}")
                text = str(message.get("stream") or "").strip()
                if text.startswith(UNPACK_FAILED):  # containerd store: the record exists, its layers do not
                    if "wrong diff id" in text:  # the archive is corrupt: no retry can help
                        raise DigestMismatch(f"{self.url}: load failed: {text} (a layer's bytes do not match its "
                                             "diff ID: corrupt archive)")
                    raise EngineError(f"{self.url}: load failed: {text}")
                if text.startswith("Loaded image ID: "):
                    image_ids.append(text.removeprefix("Loaded image ID: "))
                elif text.startswith("Loaded image: "):
                    names.append(text.removeprefix("Loaded image: "))
                elif on_status is not None:
                    on_status(message)
        return LoadResult(names=names, image_ids=image_ids)

    def abort(self) -> None:
        """Tear down every open request now (``on_kill``, or a stalled engine)."""
        with self._lock:
            connections = list(self._active)
        for connection in connections:
            if connection.stream is not None:
                connection.stream.abort()

    def close(self) -> None:
        self.dialer.close()

    def open_upgraded(self, request_path: str, *, headers: Iterable[tuple[str, str]] = ()) -> Stream:
        """A new stream hijacked by ``POST request_path`` (BuildKit's /grpc and /session)."""
        stream = self.dialer.dial(timeout=self.timeout)
        try:
            h.upgrade(stream, request_path, headers=list(headers))
        except BaseException:
            stream.close()
            raise
        stream.settimeout(None)  # long-lived: gRPC keeps its own deadlines
        return stream

    @contextlib.contextmanager
    def _request(
        self,
        method: str,
        request_path: str,
        *,
        body: Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Iterator[Any]:
        connection = h.EngineConnection(self.dialer, timeout or self.timeout)
        with self._lock:
            self._active.add(connection)
        ok = False
        try:
            try:
                connection.request(method, request_path, body=body, headers=headers or {})
                response = connection.getresponse()
            except (OSError, h.http.client.HTTPException) as exc:
                raise TransferError(f"{self.url}: {method} {request_path.split('?')[0]} failed: {exc}") from exc
            yield response
            ok = True
        finally:
            with self._lock:
                self._active.discard(connection)
            if not ok and connection.stream is not None:
                connection.stream.abort()  # the engine must see the request die, not end
            connection.close()

    def _get_json(self, request_path: str, *, what: str) -> Any:
        with self._request("GET", request_path) as response:
            h.raise_for_status(response, where=self.url, what=what)
            return h.json.loads(response.read())

    def _get_text(self, request_path: str, *, what: str) -> str:
        with self._request("GET", request_path) as response:
            h.raise_for_status(response, where=self.url, what=what)
            return response.read().decode()


def _explain(message: dict[str, Any]) -> str:
    text = (message.get("errorDetail") or {}).get("message") or message.get("error") or str(message)
    for needle, hint in LOAD_ERROR_HINTS.items():
        if needle in text:
            return f"{text} ({hint})"
    return text
