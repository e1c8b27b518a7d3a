"""Per-target platforms against fake engines: each target is sent its platform's image only, from one read."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tarfile

import pytest

from airflow_provider_artiload import transfer
from airflow_provider_artiload.exceptions import ArtiloadError
from airflow_provider_artiload.oci.platform import parse
from airflow_provider_artiload.transfer.engine import EngineTarget
from airflow_provider_artiload.transfer.plan import LoadOptions, Send, Unreachable
from airflow_provider_artiload.transfer.platforms import PlatformMismatch, select
from airflow_provider_artiload.transfer.sources import FileSource
from tests.unit.archives import layer_tar, scan
from tests.unit.test_engine_protocol import CLASSIC_INFO, CONTAINERD_INFO, FakeEngine, client_for

LOG = logging.getLogger("test")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def multi_platform(platforms: list[str], size: int = 20000, tag: str = "docker.io/mp/app:1",
                   legacy: bool = False) -> tuple[bytes, dict]:
    """An OCI layout (as BuildKit's oci exporter writes it) with a manifest per platform, each with its OWN layer
    of ``size`` bytes, and an attestation manifest, behind one nested index."""
    blobs: dict[str, bytes] = {}

    def put(data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest

    entries, found = [], {}
    for platform in platforms:
        os_name, arch, *variant = platform.split("/")
        layer = layer_tar({"arch": platform.encode() + b"\n", "pad": hashlib.sha256(platform.encode()).digest() * (size // 32)})
        layer_digest = put(layer)
        config = json.dumps({"architecture": arch, "os": os_name, **({"variant": variant[0]} if variant else {}),
                             "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}).encode()
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": put(config), "size": len(config)},
                               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest,
                                           "size": len(layer)}]}).encode()
        described = {"os": os_name, "architecture": arch, **({"variant": variant[0]} if variant else {})}
        entries.append({"mediaType": OCI_MANIFEST, "digest": put(manifest), "size": len(manifest), "platform": described})
        found[platform] = {"manifest": entries[-1]["digest"], "config": "sha256:" + hashlib.sha256(config).hexdigest(),
                           "layer": layer_digest, "size": len(layer)}
    attestation = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}).encode()
    entries.append({"mediaType": OCI_MANIFEST, "digest": put(attestation), "size": len(attestation),
                    "platform": {"os": "unknown", "architecture": "unknown"},
                    "annotations": {"vnd.docker.reference.type": "attestation-manifest"}})
    nested = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    found["index"] = put(nested)
    top = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_INDEX, "digest": found["index"], "size": len(nested), "annotations": {"io.containerd.image.name": tag}}]}
    members = [*((f"blobs/sha256/{d[7:]}", b) for d, b in sorted(blobs.items())),
               ("index.json", json.dumps(top).encode()), ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')]
    if legacy:  # as Docker 25+ saves a multi-platform image: manifest.json names the first platform's image only
        first = found[platforms[0]]
        members.append(("manifest.json", json.dumps([{"Config": f"blobs/sha256/{first['config'][7:]}", "RepoTags": ["mp/app:1"],
                                                      "Layers": [f"blobs/sha256/{first['layer'][7:]}"]}]).encode()))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue(), found


def source(tmp_path, data: bytes) -> FileSource:
    path = tmp_path / "mp.tar"
    path.write_bytes(data)
    return FileSource(str(path))


def engine_target(engine: FakeEngine, platform: str) -> EngineTarget:
    return EngineTarget(client_for(engine), platform=platform)


def test_each_engine_gets_only_its_platforms_image_from_one_read(tmp_path):
    data, d = multi_platform(["linux/amd64", "linux/arm64"], size=200_000)
    amd64 = FakeEngine(CLASSIC_INFO)
    amd64.register_on_load = d["linux/amd64"]["config"]  # the classic store calls it by its config
    arm64 = FakeEngine(CONTAINERD_INFO)
    arm64.register_on_load = d["linux/arm64"]["manifest"]  # the containerd store by its manifest, not the index
    outcomes = transfer.load(source(tmp_path, data), [engine_target(amd64, "linux/amd64"), engine_target(arm64, "linux/arm64/v8")],
                             LoadOptions(), LOG)
    for engine, outcome, platform in ((amd64, outcomes[0], "linux/amd64"), (arm64, outcomes[1], "linux/arm64")):
        [body] = engine.loaded
        sent = scan(body)
        other = d["linux/arm64" if platform == "linux/amd64" else "linux/amd64"]
        names = set(sent.members)
        assert f"blobs/sha256/{d[platform]['layer'][7:]}" in names
        assert f"blobs/sha256/{other['layer'][7:]}" not in names and f"blobs/sha256/{other['manifest'][7:]}" not in names
        assert f"blobs/sha256/{d['index'][7:]}" not in names  # the index stays out: it names the other platform
        index = json.loads(sent.metadata["index.json"])
        assert [m["digest"] for m in index["manifests"]] == [d[platform]["manifest"]]
        assert sent.image().platform == platform
        assert outcome.platform == platform and outcome.target_platform == platform
        assert outcome.manifest_digest == d[platform]["manifest"] and outcome.bytes_sent == len(body)
        # about one platform's share of the archive: its layer plus small metadata
        assert d[platform]["size"] < outcome.bytes_sent < d[platform]["size"] + 20_000 < len(data) * 0.6
    assert outcomes[0].image_id == d["linux/amd64"]["config"] and outcomes[1].image_id == d["linux/arm64"]["manifest"]


@pytest.mark.parametrize("order", [["linux/arm64", "linux/amd64"], ["linux/amd64", "linux/arm64"]])
def test_the_targets_platform_is_chosen_first_in_the_index_or_not(tmp_path, order):
    data, d = multi_platform(order)
    engine = FakeEngine(CONTAINERD_INFO)
    engine.register_on_load = d["linux/arm64"]["manifest"]
    [outcome] = transfer.load(source(tmp_path, data), [engine_target(engine, "linux/arm64")], LoadOptions(), LOG)
    assert outcome.manifest_digest == d["linux/arm64"]["manifest"] and outcome.platform == "linux/arm64"


def test_a_target_whose_platform_the_source_lacks_fails_alone_and_is_sent_nothing(tmp_path):
    data, d = multi_platform(["linux/amd64", "linux/arm64"])
    good = FakeEngine(CLASSIC_INFO)
    good.register_on_load = d["linux/amd64"]["config"]
    lacking = FakeEngine(CLASSIC_INFO)
    with pytest.raises(ArtiloadError) as info:
        transfer.load(source(tmp_path, data), [engine_target(good, "linux/amd64"), engine_target(lacking, "linux/s390x")],
                      LoadOptions(tags=("app:2",)), LOG)
    message = str(info.value)
    assert "failed on 1 of 2" in message and "linux/s390x" in message and "linux/amd64, linux/arm64" in message
    assert good.loaded and good.tags == {"app:2": d["linux/amd64"]["config"]}
    assert lacking.loaded == [] and lacking.tags == {}


def test_an_explicit_platform_forces_one_platform_everywhere(tmp_path):
    data, d = multi_platform(["linux/amd64", "linux/arm64"])
    engines = [FakeEngine(CLASSIC_INFO), FakeEngine(CLASSIC_INFO)]
    for engine in engines:
        engine.register_on_load = d["linux/arm64"]["config"]
    outcomes = transfer.load(source(tmp_path, data), [engine_target(engines[0], "linux/amd64"), engine_target(engines[1], "linux/arm64")],
                             LoadOptions(platform="linux/arm64"), LOG)
    assert [o.platform for o in outcomes] == ["linux/arm64", "linux/arm64"]
    assert [o.target_platform for o in outcomes] == ["linux/amd64", "linux/arm64"]


def test_a_single_platform_source_of_another_platform_still_loads_and_says_so(tmp_path, caplog):
    data, d = multi_platform(["linux/arm64"])
    engine = FakeEngine(CLASSIC_INFO)
    engine.register_on_load = d["linux/arm64"]["config"]
    with caplog.at_level(logging.INFO, logger="test"):
        [outcome] = transfer.load(source(tmp_path, data), [engine_target(engine, "linux/amd64")], LoadOptions(), LOG)
    assert outcome.platform == "linux/arm64" and outcome.target_platform == "linux/amd64"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "linux/amd64" in warnings[0] and "linux/arm64" in warnings[0]


def test_all_platforms_keeps_the_index_on_a_containerd_store_and_narrows_on_a_classic_one(tmp_path):
    data, d = multi_platform(["linux/amd64", "linux/arm64"])
    info = source(tmp_path, data).info()
    whole = select(info, parse("linux/amd64"), LoadOptions(all_platforms=True), where="e", store="containerd", log=LOG)
    assert not whole.narrowed and whole.id_for("containerd") == d["index"]
    assert {f"blobs/sha256/{d[p]['layer'][7:]}" for p in ("linux/amd64", "linux/arm64")} <= whole.blobs
    one = select(info, parse("linux/amd64"), LoadOptions(all_platforms=True), where="e", store="classic", log=LOG)
    assert one.narrowed and one.id_for("classic") == d["linux/amd64"]["config"]


def test_selection_follows_containerds_rules_and_never_takes_an_attestation(tmp_path):
    data, d = multi_platform(["linux/arm/v6", "linux/arm/v7", "linux/amd64"])
    info = source(tmp_path, data).info()
    assert [str(i.platform) for i in info.images] == ["linux/arm/v6", "linux/arm/v7", "linux/amd64"]  # no unknown/unknown
    pick = lambda p: select(info, parse(p), LoadOptions(), where="e", store="classic", log=LOG).platform  # noqa: E731
    assert pick("linux/arm/v7") == "linux/arm/v7" and pick("linux/arm/v6") == "linux/arm/v6"
    assert pick("linux/arm/v8") == "linux/arm/v7"
    with pytest.raises(PlatformMismatch, match="linux/386"):
        pick("linux/386")


def test_planning_a_lacking_platform_is_unreachable_before_any_byte(tmp_path):
    data, _ = multi_platform(["linux/amd64", "linux/arm64"])
    info = source(tmp_path, data).info()
    plan = engine_target(FakeEngine(CLASSIC_INFO), "linux/riscv64").plan(info, LoadOptions(), LOG)
    assert isinstance(plan, Unreachable) and isinstance(plan.error, PlatformMismatch)
    plan = engine_target(FakeEngine(CLASSIC_INFO), "linux/arm64").plan(info, LoadOptions(), LOG)
    assert isinstance(plan, Send) and plan.info.platform == "linux/arm64"


def test_a_docker_save_of_a_multi_platform_image_gives_each_platform_its_own(tmp_path):
    """Docker 25+ saves the index with a manifest.json naming one platform's image: the others load too."""
    data, d = multi_platform(["linux/amd64", "linux/arm64"], legacy=True)
    engine = FakeEngine(CLASSIC_INFO)
    engine.register_on_load = d["linux/arm64"]["config"]
    [outcome] = transfer.load(source(tmp_path, data), [engine_target(engine, "linux/arm64")], LoadOptions(), LOG)
    sent = scan(engine.loaded[0])
    [entry] = json.loads(sent.metadata["manifest.json"])
    assert entry["Config"] == f"blobs/sha256/{d['linux/arm64']['config'][7:]}" and entry["RepoTags"] == ["mp/app:1"]
    assert outcome.platform == "linux/arm64" and outcome.archive_tags == ["mp/app:1"]


class _ArmEngine(FakeEngine):
    """An engine on an arm64 host: /version says Go's arm64, /info uname's aarch64."""

    def __call__(self, request):
        from airflow_provider_artiload.transport.mock import Response

        path = request.path.split("?")[0]
        if path == "/version":
            return Response(body=json.dumps({"ApiVersion": "1.51", "Os": "linux", "Arch": "arm64"}).encode())
        if path == "/info":
            return Response(body=json.dumps({**self.info, "OSType": "linux", "Architecture": "aarch64"}).encode())
        return super().__call__(request)


def test_an_engine_reports_its_platform_and_its_connection_overrides_it(tmp_path):
    assert str(EngineTarget(client_for(_ArmEngine(CLASSIC_INFO))).platform) == "linux/arm64"
    assert str(EngineTarget(client_for(_ArmEngine(CLASSIC_INFO)), platform="linux/amd64").platform) == "linux/amd64"
    data, d = multi_platform(["linux/amd64", "linux/arm64"])
    engine = _ArmEngine(CONTAINERD_INFO)
    engine.register_on_load = d["linux/arm64"]["manifest"]
    [outcome] = transfer.load(source(tmp_path, data), [EngineTarget(client_for(engine))], LoadOptions(), LOG)
    assert outcome.platform == outcome.target_platform == "linux/arm64"


def test_a_bad_platform_extra_names_the_connection(monkeypatch):
    from airflow_provider_artiload.exceptions import EndpointError
    from airflow_provider_artiload.hooks.engine import DockerEngineHook

    monkeypatch.setenv("AIRFLOW_CONN_PF_BAD", json.dumps({"conn_type": "docker_engine", "host": "unix:///x.sock",
                                                         "extra": {"platform": "arm64"}}))
    with pytest.raises(EndpointError, match="connection 'pf_bad'.*platform 'arm64' is not os/arch"):
        DockerEngineHook("pf_bad").target
    monkeypatch.setenv("AIRFLOW_CONN_PF_OK", json.dumps({"conn_type": "docker_engine", "host": "unix:///x.sock",
                                                        "extra": {"platform": "linux/aarch64"}}))
    assert str(DockerEngineHook("pf_ok").target.platform) == "linux/arm64"
