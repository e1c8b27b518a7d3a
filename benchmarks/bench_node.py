"""On-demand node benchmark: NodeTarget over SSH against ``cat x.tar | ssh node ctr images import -`` (issue #10).

Against one standalone containerd 2.x (``scripts/harness_containerd.py``,
from ``scripts/fetch_engines.sh``) reached through a loopback sshd
(``scripts/harness.py start_sshd``), for each image size:

1. full: an empty node loads an OCI archive (busybox base + one random layer
   of SIZE bytes) with ``NodeTarget`` (paramiko streamlocal, gRPC) and with
   the ctr pipe (OpenSSH, default cipher)                   (target >= 1.0x)
2. 5% delta: the node has the base image (busybox + the SIZE layer); the
   archive adds a random layer of 5% of SIZE. Bytes NodeTarget puts on the
   wire (gRPC framing included) over the changed blobs' bytes (new layer,
   config, manifest); the pipe sends the whole archive       (target <= 1.1x)
3. retry after a cut at 50%: the SSH link is cut (every stream aborted) once
   half the archive's bytes are on the wire; the retry (3 s later, once
   containerd's GC has run, as an Airflow retry would come) sends what; its
   wire bytes over the archive size                         (target <= 0.6x)
4. memory: for each artiload run, peak RSS during it minus RSS just before
   (VmHWM after, VmRSS before; VmHWM reset with /proc/self/clear_refs)
                                                              (target < 64 MiB)

Each run is a fresh subprocess (``--worker``), as in bench_transfer.py. The
time of an artiload run covers what ``transfer.load`` would do: index the
file, plan, stream, unpack, name. Before each run the node is emptied
(``ctr images rm --sync``, then the content store is checked empty) and, for
the delta, given the base image through the unix socket (not timed).
Layers are uncompressed tars of ``os.urandom`` data, written here; no registry.

Run (as root, not in CI; the machine may be shared: read the load average)::

    .venv/bin/python benchmarks/bench_node.py --sizes 256M,1G
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import Meter, load_script, parse_size, run_cli, size_label, stop_all  # noqa: E402 - shared with the other benchmarks
from measure import run_worker as run_script  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MiB = 1 << 20
BLOCK = 512
RSS_TARGET_MIB = 64
TARGETS = {"full": 1.0, "delta bytes": 1.1, "retry bytes": 0.6}


# ---------------------------------------------------------------- test images, written as they are hashed


def _header(name: str, size: int, kind: bytes = b"0", mode: int = 0o644) -> bytes:
    """A USTAR header (sizes below 8 GiB); stdlib only, so this process never imports Airflow."""
    block = bytearray(BLOCK)
    block[0 : len(name)] = name.encode()
    block[100:108] = b"%07o\0" % mode
    block[108:124] = b"0000000\0" * 2
    block[124:136] = b"%011o\0" % size
    block[136:148] = b"00000000000\0"
    block[156:157] = kind
    block[257:265] = b"ustar\x0000"
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def random_layer(path: str, size: int, name: str) -> tuple[str, int]:
    """An uncompressed layer tar holding ``name`` with ``size`` random bytes; returns (sha256 digest, tar size)."""
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        def put(data: bytes) -> None:
            digest.update(data)
            out.write(data)

        put(_header(name, size, mode=0o644))
        left = size
        while left:
            piece = os.urandom(min(left, 4 * MiB))
            put(piece)
            left -= len(piece)
        put(bytes(-size % BLOCK) + bytes(2 * BLOCK))
    return "sha256:" + digest.hexdigest(), os.path.getsize(path)


@dataclass
class Blob:
    digest: str
    size: int
    path: str | None = None  # a file holding it
    data: bytes | None = None


def oci_archive(out: str, name: str, layers: list[Blob], diff_ids: list[str]) -> dict[str, Any]:
    """An OCI layout tarball (metadata first, then layer blobs copied from their files); returns its figures."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    config = {"architecture": arch, "os": "linux", "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    config_raw = json.dumps(config, separators=(",", ":")).encode()
    config_digest = "sha256:" + hashlib.sha256(config_raw).hexdigest()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                           "size": len(config_raw)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": b.digest, "size": b.size}
                           for b in layers]}
    manifest_raw = json.dumps(manifest, separators=(",", ":")).encode()
    manifest_digest = "sha256:" + hashlib.sha256(manifest_raw).hexdigest()
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": manifest["mediaType"], "digest": manifest_digest, "size": len(manifest_raw),
                            "annotations": {"io.containerd.image.name": name}}]}
    small = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", json.dumps(index).encode()),
             (f"blobs/sha256/{manifest_digest[7:]}", manifest_raw), (f"blobs/sha256/{config_digest[7:]}", config_raw)]
    with open(out, "wb") as tar:
        tar.write(_header("blobs/", 0, b"5", 0o755) + _header("blobs/sha256/", 0, b"5", 0o755))
        for member, data in small:
            tar.write(_header(member, len(data)) + data + bytes(-len(data) % BLOCK))
        for blob in layers:
            tar.write(_header(f"blobs/sha256/{blob.digest[7:]}", blob.size))
            if blob.data is not None:
                tar.write(blob.data)
            else:
                with open(blob.path, "rb") as src:  # type: ignore[arg-type]
                    shutil.copyfileobj(src, tar, 4 * MiB)
            tar.write(bytes(-blob.size % BLOCK))
        tar.write(bytes(2 * BLOCK))
    return {"path": out, "name": name, "manifest_digest": manifest_digest, "size": os.path.getsize(out),
            "meta_bytes": len(config_raw) + len(manifest_raw)}


# ---------------------------------------------------------------- worker (runs in a fresh subprocess)


def worker(job: dict[str, Any]) -> dict[str, Any]:
    if job["op"] == "cli":
        return run_cli(job["cmd"], stderr=subprocess.PIPE)
    import logging  # noqa: PLC0415

    from airflow_provider_artiload.containerd import ContainerdClient  # noqa: PLC0415
    from airflow_provider_artiload.transfer.node.target import NodeTarget  # noqa: PLC0415
    from airflow_provider_artiload.endpoints import parse_endpoint  # noqa: PLC0415
    from airflow_provider_artiload.exceptions import ArtiloadError  # noqa: PLC0415
    from airflow_provider_artiload.transfer.plan import LoadOptions  # noqa: PLC0415
    from airflow_provider_artiload.transfer.sources import FileSource  # noqa: PLC0415
    from airflow_provider_artiload.transport import open_dialer  # noqa: PLC0415

    log = logging.getLogger("bench_node")
    dialer = open_dialer(parse_endpoint(job["url"], kind="engine", extras=job["extras"]))
    hc = load_script("harness_containerd", REPO / "scripts" / "harness_containerd.py")
    dials = hc.Dials(lambda: dialer.dial(timeout=30))  # counts the wire bytes, and cuts the link
    client = ContainerdClient(dials, namespace="k8s.io", where=job["url"], timeout=300)
    loader = NodeTarget(client)
    client.version()  # connect first: only the transfer is measured
    half = job["size"] // 2 if job["op"] == "cut" else None

    def once(cut_at: int | None) -> Any:
        source = FileSource(job["path"])
        info = source.info()
        options = LoadOptions(tags=(job["tag"],))
        loader.plan(info, options, log)
        with source.open() as chunks:
            if cut_at is None:
                return loader.load(chunks, info, options, log)
            read = 0

            def cutting() -> Any:
                nonlocal read
                for chunk in chunks:
                    if dials.bytes_out >= cut_at and not cut_at_done:  # half the image on the wire
                        dials.cut()
                        cut_at_done.append(read)
                    read += len(chunk)
                    yield chunk

            cut_at_done: list[int] = []
            return loader.load(cutting(), info, options, log)

    cut_bytes = None
    if half is not None:
        try:
            once(half)
            raise RuntimeError("the cut load did not fail")
        except ArtiloadError:
            cut_bytes = dials.bytes_out
        # As an Airflow retry comes (after retry_delay): once containerd's GC has run over what the cut load's
        # deleted lease held. Sooner, NodeTarget may find a committed blob present, skip it, and lose it to GC
        # before it names the image ("neither in the archive nor on the node"): see the report.
        time.sleep(job.get("pause", 3.0))
    before = dials.bytes_out
    with Meter() as meter:
        outcome = once(None)
    client.close()
    dialer.close()
    return {**meter.result(), "wire_bytes": dials.bytes_out - before, "bytes_sent": outcome.bytes_sent,
            "mode": outcome.mode, "image_id": outcome.image_id, "cut_wire_bytes": cut_bytes}


def run_worker(job: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    return run_script(__file__, job, env)


# ---------------------------------------------------------------- rig


@dataclass
class Rig:
    work: str
    node: Any = None
    sshd: Any = None
    env: dict[str, str] | None = None

    def stop(self) -> None:
        stop_all((self.sshd, self.node), self.work)

    @property
    def url(self) -> str:
        return f"ssh://{self.sshd.user}@{self.sshd.host}:{self.sshd.port}{self.node.socket_path}"

    @property
    def extras(self) -> dict[str, str]:
        return {"key_file": self.sshd.client_key, "known_hosts": self.sshd.known_hosts, "look_for_keys": "false"}

    def pipe(self, path: str) -> str:
        ssh = shlex.join(self.sshd.ssh_command() + [self.node.ctr_binary, "-a", self.node.socket_path, "-n", "k8s.io",
                                                    "images", "import", "-"])
        return f"cat {shlex.quote(path)} | {ssh}"

    def empty(self) -> None:
        names = self.node.ctr("images", "ls", "-q").stdout.split()
        if names:
            self.node.ctr("images", "rm", "--sync", *names)
        deadline = time.monotonic() + 30
        while self.node.ctr("content", "ls", "-q").stdout.strip() or self.node.ctr("snapshots", "ls").stdout.count("\n") > 1:
            if time.monotonic() > deadline:
                raise RuntimeError("the node keeps content or snapshots after its images were removed")
            time.sleep(0.2)

    def has(self, name: str, digest: str) -> None:
        listed = self.node.ctr("images", "ls").stdout
        if not any(line.split()[:1] == [name] and digest in line for line in listed.splitlines()):
            raise RuntimeError(f"the node lacks {name} at {digest}:\n{listed}")


def start_rig(harness: Any, hc: Any) -> Rig:
    rig = Rig(tempfile.mkdtemp(prefix="bn-", dir="/tmp"))
    airflow_home = os.path.join(rig.work, "airflow")
    os.makedirs(airflow_home)
    rig.env = {**os.environ, "AIRFLOW_HOME": airflow_home, "AIRFLOW__CORE__UNIT_TEST_MODE": "True", "PYTHONPATH": str(REPO)}
    try:
        rig.node = hc.start_containerd(os.path.join(rig.work, "c"), hc.FETCHED_CONTAINERD)
        rig.sshd = harness.start_sshd(os.path.join(rig.work, "ssh"))
    except BaseException:
        rig.stop()
        raise
    return rig


# ---------------------------------------------------------------- measurements


def measure(rig: Rig, hc: Any, size: int) -> list[dict[str, Any]]:
    w = rig.work
    busybox = hc.busybox_layer()
    bb = Blob("sha256:" + hashlib.sha256(busybox).hexdigest(), len(busybox), data=busybox)
    big = Blob(*random_layer(f"{w}/big.layer", size, "big.bin"), path=f"{w}/big.layer")  # type: ignore[misc]
    small_size = size // 20
    small = Blob(*random_layer(f"{w}/small.layer", small_size, "delta.bin"), path=f"{w}/small.layer")  # type: ignore[misc]
    tag = f"bench-{size >> 20}m"
    full = oci_archive(f"{w}/full.tar", f"docker.io/library/{tag}:full", [bb, big], [bb.digest, big.digest])
    derived = oci_archive(f"{w}/delta.tar", f"docker.io/library/{tag}:delta", [bb, big, small],
                          [bb.digest, big.digest, small.digest])
    changed = small.size + derived["meta_bytes"]
    rows = []

    def artiload(op: str, archive: dict[str, Any], base: bool) -> dict[str, Any]:
        rig.empty()
        if base:
            rig.node.ctr("images", "import", full["path"])
        job = {"op": op, "url": rig.url, "extras": rig.extras, "path": archive["path"], "tag": archive["name"],
               "size": archive["size"]}
        result = run_worker(job, rig.env)  # type: ignore[arg-type]
        rig.has(archive["name"], archive["manifest_digest"])
        return result

    def pipe(archive: dict[str, Any], base: bool) -> dict[str, Any]:
        rig.empty()
        if base:
            rig.node.ctr("images", "import", full["path"])
        result = run_worker({"op": "cli", "cmd": rig.pipe(archive["path"])}, rig.env)  # type: ignore[arg-type]
        rig.has(archive["name"], archive["manifest_digest"])
        return result

    for case, archive, base in (("full", full, False), ("5% delta", derived, True)):
        a = artiload("load", archive, base)
        p = pipe(archive, base)
        a2 = artiload("load", archive, base)  # a second artiload run after the pipe: drift shows
        rows.append({"case": case, "size": size, "archive": archive["size"], "changed": changed if base else archive["size"],
                     "artiload": [a, a2], "pipe": p})
    cut = artiload("cut", full, False)
    rows.append({"case": "retry after a cut at 50%", "size": size, "archive": full["size"], "artiload": [cut]})
    for f in (big.path, small.path, full["path"], derived["path"]):
        os.unlink(f)  # type: ignore[arg-type]
    rig.empty()
    return rows


# ---------------------------------------------------------------- report


def report(rows: list[dict[str, Any]]) -> None:
    print("| case | image | archive | artiload s | ctr pipe s | speed ratio (pipe s / artiload s) | artiload wire bytes | "
          "pipe bytes | bytes ratio | RSS growth | target | met? |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for row in rows:
        runs = row["artiload"]
        secs = min(r["seconds"] for r in runs)
        growth = max(r["growth_kib"] for r in runs) / 1024
        wire = runs[0]["wire_bytes"]
        mem_ok = growth < RSS_TARGET_MIB
        if row["case"].startswith("retry"):
            ratio = wire / row["archive"]
            ok = ratio <= TARGETS["retry bytes"]
            cut = runs[0]["cut_wire_bytes"]
            print(f"| {row['case']} | {size_label(row['size'])} | {row['archive']} | {secs:.1f} (retry) | - | - | {wire} "
                  f"(cut run: {cut}) | - | {ratio:.3f} of the image | {growth:.1f} MiB | <= 0.6x, < 64 MiB | "
                  f"bytes {'yes' if ok else 'NO'}, memory {'yes' if mem_ok else 'NO'} |")
            continue
        p = row["pipe"]["seconds"]
        speed = p / secs
        if row["case"] == "full":
            ratio, label, ok = wire / row["archive"], "of the archive", speed >= TARGETS["full"]
            target = ">= 1.0x, < 64 MiB"
        else:
            ratio, label = wire / row["changed"], f"of changed blobs ({row['changed']})"
            ok = ratio <= TARGETS["delta bytes"]
            target = "bytes <= 1.1x, < 64 MiB"
        print(f"| {row['case']} | {size_label(row['size'])} | {row['archive']} | {secs:.1f} | {p:.1f} | {speed:.2f} | {wire} | "
              f"{row['archive']} | {ratio:.3f} {label} | {growth:.1f} MiB | {target} | "
              f"{'yes' if ok else 'NO'}, memory {'yes' if mem_ok else 'NO'} |")
    print("\nRaw runs (seconds; MB/s = archive bytes / s):")
    for row in rows:
        for i, r in enumerate(row["artiload"]):
            print(f"  {row['case']:26} {size_label(row['size']):7} artiload#{i + 1} {r['seconds']:6.1f} s "
                  f"{row['archive'] / r['seconds'] / 1e6:6.0f} MB/s  wire {r['wire_bytes']}  sent {r['bytes_sent']}  "
                  f"mode {r['mode']}  RSS {r['rss_before_kib'] / 1024:.0f} -> peak {r['peak_rss_kib'] / 1024:.0f} MiB")
        if "pipe" in row:
            p = row["pipe"]
            print(f"  {row['case']:26} {size_label(row['size']):7} ctr pipe   {p['seconds']:6.1f} s "
                  f"{row['archive'] / p['seconds'] / 1e6:6.0f} MB/s  (CLI peak RSS {p['peak_rss_kib'] / 1024:.0f} MiB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="256M,1G", help="comma-separated sizes of the big layer (K/M/G suffixes)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    started, load_at_start = time.monotonic(), os.getloadavg()
    harness = load_script("artiload_harness", REPO / "scripts" / "harness.py")
    sys.path.insert(0, str(REPO / "scripts"))
    hc = load_script("harness_containerd", REPO / "scripts" / "harness_containerd.py")
    rig = start_rig(harness, hc)
    rows: list[dict[str, Any]] = []
    try:
        for size in [parse_size(s) for s in args.sizes.split(",")]:
            print(f"measuring {size_label(size)} ...", file=sys.stderr, flush=True)
            rows += measure(rig, hc, size)
        ssh_version = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
        import paramiko  # noqa: PLC0415

        print(f"Machine: {platform.node()}, nproc {os.cpu_count()}, {platform.platform()}, Python {platform.python_version()}")
        print(f"Node: containerd {rig.node.version} ({rig.node.binary}), namespace k8s.io, overlayfs; "
              f"{ssh_version}; paramiko {paramiko.__version__}")
        loads = lambda la: "/".join(f"{x:.2f}" for x in la)  # noqa: E731
        print(f"Load average (1/5/15 min) at start {loads(load_at_start)}, at end {loads(os.getloadavg())} "
              "(a shared machine: other work skews the seconds)\n")
    finally:
        rig.stop()
    report(rows)
    print(f"\n{' '.join(sys.argv)}: {time.monotonic() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
