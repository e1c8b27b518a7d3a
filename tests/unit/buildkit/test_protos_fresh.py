"""The committed *_pb2 modules are exactly what scripts/generate_protos.py makes from _proto/*.proto."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "scripts"))
import generate_protos  # noqa: E402


def test_generated_modules_match_the_proto_files():
    stale = generate_protos.drift()
    assert not stale, f"regenerate with `python scripts/generate_protos.py`: {stale}"


def test_every_proto_has_committed_modules_with_relative_imports():
    for proto in generate_protos.proto_files():
        for suffix in ("_pb2.py", "_pb2_grpc.py"):
            text = (proto.parent / (proto.stem + suffix)).read_text()
            assert "\nimport " not in "\n".join(l for l in text.splitlines() if l.startswith("import ") and "_pb2" in l)


def test_wire_names_match_buildkit():
    from airflow_provider_artiload.buildkit._proto import control_pb2, filesync_pb2, fsutil_pb2, secrets_pb2

    assert control_pb2.DESCRIPTOR.services_by_name["Control"].full_name == "moby.buildkit.v1.Control"
    assert filesync_pb2.DESCRIPTOR.services_by_name["FileSync"].full_name == "moby.filesync.v1.FileSync"
    assert secrets_pb2.DESCRIPTOR.services_by_name["Secrets"].full_name == "moby.buildkit.secrets.v1.Secrets"
    fields = {f.name: f.number for f in control_pb2.SolveRequest.DESCRIPTOR.fields}
    assert fields == {"Ref": 1, "Exporter": 3, "ExporterAttrs": 4, "Session": 5, "Frontend": 6, "FrontendAttrs": 7,
                      "Cache": 8, "Entitlements": 9}
    cache = {f.name: f.number for f in control_pb2.CacheOptions.DESCRIPTOR.fields}
    assert cache == {"Exports": 4, "Imports": 5}
    entry = {f.name: f.number for f in control_pb2.CacheOptionsEntry.DESCRIPTOR.fields}
    assert entry == {"Type": 1, "Attrs": 2}
    stat = {f.name: f.number for f in fsutil_pb2.Stat.DESCRIPTOR.fields}
    assert stat == {"path": 1, "mode": 2, "uid": 3, "gid": 4, "size": 5, "modTime": 6, "linkname": 7,
                    "devmajor": 8, "devminor": 9, "xattrs": 10}
    assert fsutil_pb2.Packet.PACKET_FIN == 3 and fsutil_pb2.Packet.PACKET_ERR == 4
