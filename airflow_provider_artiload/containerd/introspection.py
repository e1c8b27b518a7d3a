"""containerd's Introspection service, read-only: which platforms the node's plugins serve.

containerd has no "server platform" call; each plugin states the platforms
it serves (``ctr plugins ls`` shows them), and the runtime's are the ones
its containers run: what the node is. Nothing here knows about images.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_artiload.containerd._proto import introspection_pb2, introspection_pb2_grpc
from airflow_provider_artiload.containerd.connection import Connection

RUNTIME_TYPES = ("io.containerd.runtime.v2", "io.containerd.runtime.v1")  # the task runtime: what containers run on


@dataclass(frozen=True)
class PluginPlatforms:
    type: str
    id: str
    platforms: tuple[tuple[str, str, str], ...]  # (os, architecture, variant)


class Introspection:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def plugins(self) -> list[PluginPlatforms]:
        request = introspection_pb2.PluginsRequest()
        reply = self.connection.call(introspection_pb2_grpc.IntrospectionStub, "Plugins", request, "Introspection.Plugins")
        return [
            PluginPlatforms(p.type, p.id, tuple((x.os, x.architecture, x.variant) for x in p.platforms))
            for p in reply.plugins
        ]

    def platform(self) -> tuple[str, str, str] | None:
        """The node's platform: its task runtime's first, else the platform most plugins state; None if none does."""
        plugins = self.plugins()
        for plugin in plugins:
            if plugin.type in RUNTIME_TYPES and plugin.platforms:
                return plugin.platforms[0]
        stated = [p.platforms[0] for p in plugins if p.platforms]
        return max(set(stated), key=stated.count) if stated else None


__all__ = ["Introspection", "PluginPlatforms"]
