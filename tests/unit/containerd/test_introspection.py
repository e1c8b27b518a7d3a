"""The Introspection subset: containerd's wire names, and how a node's platform is read from its plugins."""

from __future__ import annotations

from types import SimpleNamespace

from airflow_provider_artiload.containerd._proto import introspection_pb2
from airflow_provider_artiload.containerd.introspection import Introspection, PluginPlatforms


def test_wire_names_and_numbers_are_containerds():
    service = introspection_pb2.DESCRIPTOR.services_by_name["Introspection"]
    assert service.full_name == "containerd.services.introspection.v1.Introspection"
    numbers = {f.name: f.number for f in introspection_pb2.Plugin.DESCRIPTOR.fields}
    assert numbers == {"type": 1, "id": 2, "requires": 3, "platforms": 4}
    assert introspection_pb2.Plugin.DESCRIPTOR.fields_by_name["platforms"].message_type.full_name == "containerd.types.Platform"
    assert {f.name: f.number for f in introspection_pb2.PluginsRequest.DESCRIPTOR.fields} == {"filters": 1}


class _Stub(Introspection):
    def __init__(self, plugins):
        super().__init__(SimpleNamespace())
        self._plugins = plugins

    def plugins(self):
        return self._plugins


def test_the_task_runtimes_platform_is_the_nodes():
    plugins = [PluginPlatforms("io.containerd.snapshotter.v1", "overlayfs", (("linux", "amd64", ""),)),
               PluginPlatforms("io.containerd.runtime.v2", "task", (("linux", "arm64", "v8"), ("linux", "arm", "v7")))]
    assert _Stub(plugins).platform() == ("linux", "arm64", "v8")


def test_without_a_runtime_the_platform_most_plugins_state_and_none_when_none_does():
    plugins = [PluginPlatforms("a", "1", (("linux", "arm64", ""),)), PluginPlatforms("b", "2", (("linux", "arm64", ""),)),
               PluginPlatforms("c", "3", (("linux", "amd64", ""),)), PluginPlatforms("d", "4", ())]
    assert _Stub(plugins).platform() == ("linux", "arm64", "")
    assert _Stub([PluginPlatforms("d", "4", ())]).platform() is None
