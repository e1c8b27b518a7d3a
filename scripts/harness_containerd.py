"""A private, standalone containerd for artiload's integration tests, and test images made without a registry.

Two binaries are supported: Debian's ``/usr/bin/containerd`` (1.6.x, config
``version = 2``) and the 2.x that ``scripts/fetch_engines.sh`` unpacks into
``.engines/sid/root/usr/bin`` (config ``version = 3``). Each instance has its
own config, root, state, opt dir and sockets under its workdir; the CRI
plugin is disabled (nothing here needs Kubernetes, and it wants a CNI).
``stop()`` kills containerd, its shims and their containers and unmounts
everything under the workdir.

    python scripts/harness_containerd.py start DIR [BINARY]   # prints the socket path
    python scripts/harness_containerd.py stop DIR

Stdlib only (plus scripts/harness.py's process helpers); never imports artiload.
:class:`Dials` wraps any client's dial function, for tests and benchmarks alike.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import HarnessError, _alive, _engine_processes, _signal_all, _terminate, _unmount_under, _wait_dead, log_tail  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEBIAN_CONTAINERD = "/usr/bin/containerd"
FETCHED_CONTAINERD = str(ROOT / ".engines" / "sid" / "root" / "usr" / "bin" / "containerd")
SOCKET_NAME = "c.sock"
_UNIX_PATH_MAX = 107
# Plugins that cannot run (or must not touch the host) in a private, CNI-less instance.
_DISABLED = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime",
             "io.containerd.podsandbox.controller.v1.podsandbox", "io.containerd.sandbox.controller.v1.shim",
             "io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
             "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper",
             "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]


@dataclass
class Containerd:
    """One running containerd; everything it owns lives under ``workdir``."""

    binary: str
    ctr_binary: str
    version: str
    socket_path: str
    workdir: str
    pid: int
    env: dict[str, str]
    log_path: str
    _proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def ctr(self, *args: str, namespace: str = "k8s.io", timeout: float = 120,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run this containerd's own ``ctr`` against it; raise with its output when it fails."""
        argv = [self.ctr_binary, "-a", self.socket_path, "-n", namespace, *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self.env,
                              stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise HarnessError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return done

    def stop(self, timeout: float = 15.0) -> None:
        """Stop containerd, its shims and containers; unmount what is left. Idempotent."""
        work = os.path.realpath(self.workdir)
        if _alive(self.pid, self._proc):
            _terminate([self.pid], timeout, self._proc)
        leftovers = _engine_processes(work)  # shims (they outlive containerd on purpose) and containers
        if leftovers:
            _signal_all(leftovers, signal.SIGKILL)
            _wait_dead(leftovers, 5)
        _unmount_under(work)


def binary_version(binary: str) -> str:
    """``containerd --version`` as ``1.6.20`` / ``2.1.9`` (Debian suffixes dropped)."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    except OSError as exc:
        raise HarnessError(f"cannot run {binary}: {exc} (install containerd, or run scripts/fetch_engines.sh)") from exc
    found = re.search(r"\sv?(\d+\.\d+\.\d+)", out)
    if not found:
        raise HarnessError(f"cannot read the version of {binary} from {out!r}")
    return found.group(1)


def config_text(work: str, version: str) -> str:
    """A config whose every path is under ``work``; schema 2 for 1.x, 3 for 2.x."""
    schema = 3 if int(version.split(".")[0]) >= 2 else 2
    disabled = ", ".join(json.dumps(p) for p in _DISABLED)
    return "\n".join([
        f"version = {schema}", f'root = "{work}/root"', f'state = "{work}/state"',
        f"disabled_plugins = [{disabled}]", "",
        "[grpc]", f'  address = "{work}/{SOCKET_NAME}"', "",
        "[ttrpc]", f'  address = "{work}/{SOCKET_NAME}.ttrpc"', "",
        "[plugins]", '  [plugins."io.containerd.internal.v1.opt"]', f'    path = "{work}/opt"', ""])


def start_containerd(workdir: str | os.PathLike[str], binary: str = DEBIAN_CONTAINERD,
                     timeout: float = 30.0) -> Containerd:
    """Start ``binary`` with a private config; ready when ``ctr version`` answers on its socket."""
    if not os.path.exists(binary):
        hint = "run scripts/fetch_engines.sh" if binary == FETCHED_CONTAINERD else "apt-get install containerd"
        raise HarnessError(f"{binary} does not exist: {hint}")
    binary = os.path.abspath(binary)
    version = binary_version(binary)
    work = os.path.realpath(workdir)
    sock = f"{work}/{SOCKET_NAME}"
    if len(sock + ".ttrpc") > _UNIX_PATH_MAX:
        raise HarnessError(f"workdir {work!r} is too long for unix socket paths: use a short one under /tmp")
    os.makedirs(work, exist_ok=True)
    Path(work, "config.toml").write_text(config_text(work, version))
    bindir = os.path.dirname(binary)
    ctr = os.path.join(bindir, "ctr")
    # Its own directory first, so it finds its own shim; runc comes from the machine (/usr/sbin).
    env = {**os.environ, "PATH": f"{bindir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    log_path = f"{work}/containerd.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([binary, "--config", f"{work}/config.toml"], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, cwd=work, env=env, start_new_session=True)
    server = Containerd(binary, ctr, version, sock, work, proc.pid, env, log_path, proc)
    deadline = time.monotonic() + timeout
    while True:
        if os.path.exists(sock) and server.ctr("version", check=False, timeout=10).returncode == 0:
            return server
        if proc.poll() is not None or time.monotonic() > deadline:
            why = f"exited with {proc.returncode}" if proc.poll() is not None else f"not ready after {timeout:.0f}s"
            server.stop(timeout=5)
            raise HarnessError(f"containerd {version} ({binary}) {why}; {log_path} ends with:\n{log_tail(log_path)}")
        time.sleep(0.1)


# ---------------------------------------------------------------- a client's streams, counted and cut


class Dials:
    """A dial function that remembers its open streams, so a test can cut them mid-call (an SSH link dropping).

    ``bytes_out`` counts every byte the client sent on these streams, gRPC framing included.
    """

    def __init__(self, dial: Callable[[], Any]) -> None:
        self._dial = dial
        self.streams: list[Any] = []
        self.bytes_out = 0
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        stream = self._dial()
        send = stream.sendall

        def counted(data: Any) -> None:
            with self._lock:
                self.bytes_out += len(data)
            send(data)

        stream.sendall = counted
        with self._lock:
            self.streams.append(stream)
        return stream

    def cut(self) -> None:
        with self._lock:
            streams, self.streams = self.streams, []
        for stream in streams:
            stream.abort()


# ---------------------------------------------------------------- test images (no registry)

LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A reproducible uncompressed layer: ``files`` (mode 0755) and symlinks, parents created."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({str(Path(p).parent) for p in [*files, *(links or {})]} - {"."})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
        for name, target in sorted((links or {}).items()):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buf.getvalue()


def busybox_layer(extra: dict[str, bytes] | None = None) -> bytes:
    """/bin/busybox (static, from busybox-static) with sh, echo, cat and ls linked to it, plus ``extra`` files."""
    path = shutil.which("busybox") or "/bin/busybox"
    data = Path(path).read_bytes()
    if b"/ld-linux" in data[:4096]:
        raise HarnessError(f"{path} is dynamically linked: install busybox-static")
    return layer_tar({"bin/busybox": data, **(extra or {})}, {f"bin/{n}": "busybox" for n in ("sh", "echo", "cat", "ls")})


@dataclass(frozen=True)
class TestImage:
    """An OCI image as blobs: ``blobs`` maps digest -> bytes; ``layers`` are (descriptor, diff ID)."""

    config: dict
    manifest: dict
    blobs: dict[str, bytes]
    layers: list[tuple[dict, str]]

    @property
    def manifest_bytes(self) -> bytes:
        return self.blobs[self.manifest_digest]

    @property
    def manifest_digest(self) -> str:
        return self.manifest_descriptor["digest"]

    @property
    def manifest_descriptor(self) -> dict:
        data = json.dumps(self.manifest, separators=(",", ":")).encode()
        return {"mediaType": MANIFEST, "digest": sha256(data), "size": len(data)}


def make_image(layers: list[bytes], *, gzipped: list[bool] | None = None) -> TestImage:
    """Config + manifest for uncompressed ``layers``, each sent as tar or tar+gzip."""
    gzipped = gzipped or [False] * len(layers)
    blobs: dict[str, bytes] = {}
    descs: list[tuple[dict, str]] = []
    for raw, gz in zip(layers, gzipped):
        blob = gzip.compress(raw, mtime=0) if gz else raw
        desc = {"mediaType": LAYER_GZIP if gz else LAYER_TAR, "digest": sha256(blob), "size": len(blob)}
        blobs[desc["digest"]] = blob
        descs.append((desc, sha256(raw)))
    config = {"architecture": _arch(), "os": "linux", "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
              "rootfs": {"type": "layers", "diff_ids": [d for _, d in descs]}}
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    blobs[sha256(config_bytes)] = config_bytes
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST,
                "config": {"mediaType": CONFIG, "digest": sha256(config_bytes), "size": len(config_bytes)},
                "layers": [d for d, _ in descs]}
    image = TestImage(config, manifest, blobs, descs)
    blobs[image.manifest_digest] = json.dumps(manifest, separators=(",", ":")).encode()
    return image


def write_oci_layout(image: TestImage, path: str | os.PathLike[str], name: str) -> str:
    """An OCI layout tarball of ``image`` named ``name``, for ``ctr images import``."""
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{**image.manifest_descriptor,
                            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name}}]}
    members = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": json.dumps(index).encode()}
    members.update({f"blobs/sha256/{d.split(':', 1)[1]}": b for d, b in image.blobs.items()})
    with tarfile.open(path, "w") as tar:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def _arch() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


# ---------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start it, print its socket, leave it running")
    start.add_argument("dir")
    start.add_argument("binary", nargs="?", default=DEBIAN_CONTAINERD)
    sub.add_parser("stop", help="stop the containerd whose workdir is DIR").add_argument("dir")
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            print(start_containerd(args.dir, args.binary).socket_path)
        else:
            work = os.path.realpath(args.dir)
            pids = _engine_processes(work)
            with contextlib.suppress(Exception):
                _terminate(sorted(pids), 10)
            _unmount_under(work)
    except HarnessError as exc:
        print(f"harness_containerd: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
