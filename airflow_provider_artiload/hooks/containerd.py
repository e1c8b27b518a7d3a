"""ContainerdHook: an Airflow connection to a containerd node (k3s, Kubernetes, nerdctl host): load target and source."""

from __future__ import annotations

import dataclasses
import re
from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook
from airflow.utils.net import get_hostname

from airflow_provider_artiload import transfer
from airflow_provider_artiload.artifacts import DockerArchive
from airflow_provider_artiload.containerd.client import ContainerdClient
from airflow_provider_artiload.transfer.node.source import NodeSource
from airflow_provider_artiload.transfer.node.target import NodeTarget
from airflow_provider_artiload.endpoints import DEFAULT_SOCKETS, Endpoint, parse_bool, parse_endpoint, parse_float
from airflow_provider_artiload.exceptions import ArtiloadError, EndpointError
from airflow_provider_artiload.hooks.connection import ConnectionBacked, endpoint_from_connection
from airflow_provider_artiload.hooks.paths import as_target
from airflow_provider_artiload.transport import open_dialer

DEFAULT_NAMESPACE = "k8s.io"  # what kubelet and k3s use
DEFAULT_SNAPSHOTTER = "overlayfs"
_PLATFORM = re.compile(r"[a-z0-9_]+/[a-z0-9_]+(/[a-z0-9_]+)?")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class ContainerdHook(ConnectionBacked, BaseHook):
    """A containerd socket reached locally or over SSH (nothing on the node but sshd).

    Nothing connects until a method needs the node. Without a connection named
    ``containerd_default``, ``unix:///run/containerd/containerd.sock``.

    :param containerd_conn_id: the ``containerd`` connection.
    :param namespace: containerd namespace (extra ``namespace``, default ``k8s.io``).
    :param snapshotter: where images are unpacked (extra ``snapshotter``, default ``overlayfs``).
    :param platform: ``os/arch[/variant]`` picked from multi-platform archives (extra ``platform``,
        default linux/amd64).
    :param pin: in namespace ``k8s.io``, label the images it creates ``io.cri-containerd.pinned=pinned``
        so kubelet's image GC keeps them (extra ``pin``, default true).
    """

    conn_name_attr = "containerd_conn_id"
    default_conn_name = "containerd_default"
    conn_type = "containerd"
    hook_name = "containerd node (artiload)"
    target_settings = ("pin",)  # operator arguments hooks/targets.py hands to this kind

    def __init__(
        self,
        containerd_conn_id: str = default_conn_name,
        *,
        namespace: str | None = None,
        snapshotter: str | None = None,
        platform: str | None = None,
        timeout: float | None = None,
        pin: bool | None = None,
    ) -> None:
        super().__init__()
        self.containerd_conn_id = containerd_conn_id
        self._pin = pin
        self._namespace = namespace
        self._snapshotter = snapshotter
        self._platform = platform
        self._timeout = timeout

    @cached_property
    def endpoint(self) -> Endpoint:
        if self._connection is None:
            return parse_endpoint(f"unix://{DEFAULT_SOCKETS['containerd']}", kind="containerd")
        return endpoint_from_connection(self._connection, kind="containerd", get_connection=self.get_connection)

    @cached_property
    def settings(self) -> dict[str, Any]:
        """namespace, snapshotter, platform, timeout: argument, else extra, else default; checked strictly."""
        extras = self._extras
        namespace = self._namespace or extras.get("namespace") or DEFAULT_NAMESPACE
        snapshotter = self._snapshotter or extras.get("snapshotter") or DEFAULT_SNAPSHOTTER
        platform = self._platform or extras.get("platform")
        where = f"connection {self.containerd_conn_id!r}"
        for name, value in (("namespace", namespace), ("snapshotter", snapshotter)):
            if not isinstance(value, str) or not _NAME.fullmatch(value):
                raise EndpointError(f"{where}: {name} {value!r} is not a valid containerd {name} name")
        if platform is not None and (not isinstance(platform, str) or not _PLATFORM.fullmatch(platform)):
            raise EndpointError(f"{where}: platform {platform!r} is not os/arch[/variant], e.g. linux/amd64")
        timeout = self._timeout or parse_float(extras.get("timeout"), name="timeout", default=60.0)
        pin = self._pin if self._pin is not None else parse_bool(extras.get("pin"), name="pin", default=True)
        return {"namespace": namespace, "snapshotter": snapshotter, "platform": platform, "timeout": timeout, "pin": pin}

    @cached_property
    def client(self) -> ContainerdClient:
        dialer = open_dialer(self.endpoint)
        self._dialer = dialer
        settings = self.settings
        return ContainerdClient(
            lambda: dialer.dial(timeout=settings["timeout"]),
            namespace=settings["namespace"],
            where=self.endpoint.url,
            timeout=settings["timeout"],
        )

    @cached_property
    def target(self) -> NodeTarget:
        """This node as a load target."""
        return NodeTarget(self.client, snapshotter=self.settings["snapshotter"], platform=self.settings["platform"],
                          pin=self.settings["pin"])

    def source(self, image: str) -> NodeSource:
        """``image`` read out of this node's content store as an OCI archive (for saves and copies)."""
        return NodeSource(self.client, image, platform=self.settings["platform"])

    def save_image(self, image: str, path: str | Any, platforms: tuple[str, ...] | list[str] = ()) -> DockerArchive:
        """Stream ``image`` from the node into an OCI archive at ``path`` (local or object storage); complete or absent.
        ``platforms``: these images of a multi-platform index, each whole on the node; none: the connection's one."""
        source = NodeSource(self.client, image, platform=self.settings["platform"], platforms=tuple(platforms)) \
            if platforms else self.source(image)
        artifact = transfer.save_source(source, as_target(path), self.log)
        return dataclasses.replace(artifact, hostname=get_hostname())

    def test_connection(self) -> tuple[bool, str]:
        try:
            version = self.client.version()
            namespace = self.client.namespace
            if not self.client.has_namespace():
                return False, f"containerd {version.version} at {self.endpoint}: namespace {namespace} does not exist on {self.endpoint}"
        except ArtiloadError as exc:
            return False, str(exc)
        return True, f"containerd {version.version} ({version.revision[:12]}) at {self.endpoint}, namespace {namespace}"

    def abort(self) -> None:
        """Cancel every call in flight (``on_kill``): closing the channel fails them at once."""
        self.close()

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()
        dialer = getattr(self, "_dialer", None)
        if dialer is not None and hasattr(dialer, "close"):
            dialer.close()


__all__ = ["ContainerdHook"]
