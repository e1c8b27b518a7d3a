"""Benchmark artiload's BuildKit client against the BuildKit inside a private Docker Engine.

    python benchmarks/bench_build.py                       # starts (and stops) its own engine
    python benchmarks/bench_build.py --engine unix:///path/docker.sock --runs 3

Prints a table:
- context upload MB/s: 300 MB in one file plus 2,000 small files (every
  file touched before each run, so the daemon requests all of them again),
  timed from the daemon's first FileSync call to the last one's end;
- ``tar`` export MB/s and peak RSS growth (peak minus the RSS just before)
  for an image with a 500 MB layer, against ``docker save -o`` of the same image.

    python benchmarks/bench_build.py --cache --runs 3      # the build cache (issue 18)

With ``--cache``: a Dockerfile whose RUN steps take most of the time, built
cold and with ``cache_from`` each location (a local directory, sftp://, s3://
on moto, a registry), every build on a fresh Docker 28 containerd-store
engine, against ``docker buildx build --cache-from`` on the same caches;
times and the bytes each build moved.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from airflow_provider_artiload.buildkit.client import BuildKitClient, BuildRequest  # noqa: E402
from airflow_provider_artiload.endpoints import parse_endpoint  # noqa: E402
from airflow_provider_artiload.engine.client import EngineClient  # noqa: E402
from airflow_provider_artiload.transport import open_dialer  # noqa: E402

BASE = "artiload-test/busybox:latest"
MB = 1_000_000
quiet = logging.getLogger("bench.quiet")
quiet.addHandler(logging.NullHandler())
quiet.propagate = False


def rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakRSS:
    """Samples this process's RSS every 10 ms; ``growth`` is the peak minus the RSS at start."""

    def __init__(self) -> None:
        self.start = rss()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss())

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())

    @property
    def growth(self) -> int:
        return self.peak - self.start


def make_client(engine_url: str) -> BuildKitClient:
    engine = EngineClient(open_dialer(parse_endpoint(engine_url, kind="engine")))
    return BuildKitClient(
        lambda: engine.open_upgraded("/grpc"),
        lambda headers: engine.open_upgraded("/session", headers=headers),
        where=f"docker://{engine_url}",
    )


def make_upload_context(workdir: str) -> Path:
    ctx = Path(workdir) / "upload"
    (ctx / "small").mkdir(parents=True)
    with open(ctx / "big.bin", "wb") as handle:
        for _ in range(300):
            handle.write(os.urandom(MB))
    for i in range(2000):
        (ctx / "small" / f"f{i:04d}.txt").write_bytes(os.urandom(2048))
    # Only the build context is timed; COPY of a small file keeps the daemon's work small.
    (ctx / "Dockerfile").write_text(f"FROM {BASE}\nCOPY small/f0000.txt /x\nCOPY . /ctx\n")
    os.sync()  # no write-back of the fresh files competing with the daemon's writes
    return ctx


def bench_upload(client: BuildKitClient, ctx: Path) -> tuple[float, float, int, int]:
    now = time.time()
    for path in ctx.rglob("*"):  # new mtimes: the daemon asks for every file again
        os.utime(path, (now, now))
    with PeakRSS() as peak:
        result = client.solve(BuildRequest(context=str(ctx), export="none", network="none"), log=quiet)
    stats = client.last_filesync.stats
    return stats.data_bytes / stats.seconds / MB, result.seconds, peak.growth, stats.files_requested


def bench_tar(client: BuildKitClient, ctx: str, out: str) -> tuple[float, int, int]:
    with open(out, "wb", buffering=0) as handle, PeakRSS() as peak:
        started = time.monotonic()
        result = client.solve(BuildRequest(context=ctx, export="tar", output=handle, network="none"), log=quiet)
        os.fsync(handle.fileno())
        seconds = time.monotonic() - started
    return result.bytes_exported / seconds / MB, peak.growth, result.bytes_exported


def bench_save(engine_url: str, image: str, out: str) -> float:
    started = time.monotonic()
    subprocess.run(["docker", "-H", engine_url, "save", "-o", out, image], check=True)
    with open(out, "rb") as handle:
        os.fsync(handle.fileno())
    return os.path.getsize(out) / (time.monotonic() - started) / MB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", help="unix:// URL of an engine that has the base image; default: start one")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cache", action="store_true", help="benchmark the build cache instead")
    args = parser.parse_args()
    if args.cache:
        return bench_cache(args.runs)
    workdir = tempfile.mkdtemp(prefix="bench-build-", dir="/var/tmp")
    started_engine = None
    try:
        engine_url = args.engine
        if not engine_url:
            import harness

            started_engine = harness.start_engine(os.path.join(workdir, "engine"), name="bench")
            harness.build_base_image(started_engine.socket_path)
            engine_url = started_engine.unix_url
        client = make_client(engine_url)
        upload_ctx = make_upload_context(workdir)
        uploads = [bench_upload(client, upload_ctx) for _ in range(args.runs)]
        assert all(u[3] >= 2001 for u in uploads), uploads  # every file was sent each time

        ctx = Path(workdir) / "big"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM {BASE}\nRUN head -c {500 * MB} /dev/urandom > /blob\n")
        client.solve(BuildRequest(context=str(ctx), image="bench/big:1", network="none"), log=quiet)  # warm the cache
        tars, saves = [], []
        for run in range(args.runs):
            tars.append(bench_tar(client, str(ctx), os.path.join(workdir, "rootfs.tar")))
            os.unlink(os.path.join(workdir, "rootfs.tar"))
            saves.append(bench_save(engine_url, "bench/big:1", os.path.join(workdir, "saved.tar")))
            os.unlink(os.path.join(workdir, "saved.tar"))
        client.close()

        up = statistics.median(u[0] for u in uploads)
        tar_rate = statistics.median(t[0] for t in tars)
        save_rate = statistics.median(saves)
        print(f"\nmedians of {args.runs} runs; engine {engine_url}")
        print("| measurement | value |")
        print("|---|---|")
        print(f"| context upload, 300 MB + 2,000 x 2 KiB files | {up:.0f} MB/s (runs: {', '.join(f'{u[0]:.0f}' for u in uploads)}) |")
        print(f"| whole build incl. upload | {statistics.median(u[1] for u in uploads):.1f} s |")
        print(f"| peak RSS growth during upload | {max(u[2] for u in uploads) / 2**20:.1f} MiB |")
        print(f"| `tar` export of a 500 MB layer to a file | {tar_rate:.0f} MB/s (runs: {', '.join(f'{t[0]:.0f}' for t in tars)}) |")
        print(f"| peak RSS growth during the export | {max(t[1] for t in tars) / 2**20:.1f} MiB |")
        print(f"| `docker save -o` of the same image | {save_rate:.0f} MB/s (runs: {', '.join(f'{s:.0f}' for s in saves)}) |")
        print(f"| export / docker save | {tar_rate / save_rate:.2f}x |")
    finally:
        if started_engine is not None:
            started_engine.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


# ---------------------------------------------------------------- build cache (--cache)

CACHE_DOCKERFILE = (
    "FROM scratch\nCOPY busybox /bin/busybox\n"
    'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox sleep 6 && /bin/busybox head -c 24000000 /dev/urandom > /a"]\n'
    'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox sleep 3 && /bin/busybox head -c 8000000 /dev/urandom > /b"]\n'
)


def proc_io(pid: int) -> dict[str, int]:
    """rchar/wchar of a process: bytes it read and wrote (sockets included), for the registry's traffic."""
    with open(f"/proc/{pid}/io") as handle:
        return {k: int(v) for k, v in (line.split(": ") for line in handle)}


class CacheBench:
    """Fresh Docker 28 containerd-store engines, one per measured build, and every cache location at once."""

    def __init__(self, workdir: str) -> None:
        import harness
        import harness_registry

        self.harness = harness
        self.workdir = workdir
        self.started: list = []
        self.kind = harness.engine_kind("28-containerd")
        self.ctx = Path(workdir) / "cache-ctx"
        self.ctx.mkdir()
        shutil.copy("/bin/busybox", self.ctx / "busybox")
        (self.ctx / "Dockerfile").write_text(CACHE_DOCKERFILE)
        self.registry = harness_registry.start_registry(os.path.join(workdir, "registry"))
        self.started.append(self.registry)
        self.sshd = harness.start_sshd(os.path.join(workdir, "sshd"))
        self.started.append(self.sshd)
        home = Path(workdir) / "home"
        (home / ".ssh").mkdir(parents=True)
        shutil.copy(self.sshd.known_hosts, home / ".ssh" / "known_hosts")
        os.environ["HOME"] = str(home)
        os.environ["AIRFLOW_CONN_STORE"] = json.dumps({"conn_type": "sftp", "host": self.sshd.host, "port": self.sshd.port,
                                                       "login": self.sshd.user, "extra": {"key_file": self.sshd.client_key}})
        self.moto = self._start_moto()
        self.buildx_config = self._buildx_config()

    def _start_moto(self) -> subprocess.Popen:
        import socket
        import urllib.request

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        moto = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.started.append(type("P", (), {"stop": lambda _self: (moto.terminate(), moto.wait(30))})())
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        os.environ["AIRFLOW_CONN_MOTO"] = json.dumps({"conn_type": "aws", "login": "testing", "password": "testing",
                                                      "extra": {"endpoint_url": url, "region_name": "us-east-1"}})
        import boto3

        boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket="bench")
        return moto

    def _buildx_config(self) -> str | None:
        plugin = ROOT / ".engines" / "sid" / "root" / "usr" / "libexec" / "docker" / "cli-plugins" / "docker-buildx"
        if not plugin.exists():
            return None
        config = Path(self.workdir) / "docker-config"
        (config / "cli-plugins").mkdir(parents=True)
        shutil.copy(plugin, config / "cli-plugins" / "docker-buildx")
        return str(config)

    def engine(self, name: str):
        engine = self.harness.start_engine(os.path.join(self.workdir, name), name=name, kind=self.kind)
        self.started.append(engine)
        return engine

    def build(self, engine, *, cache_from=None, cache_to=None) -> tuple[float, int, int]:
        """One artiload build on ``engine``: seconds, bytes read from and written to session stores."""
        from airflow_provider_artiload.hooks.cache import open_store, parse_entries
        from airflow_provider_artiload.buildkit.cache import CachePlan

        plan = CachePlan.prepare(parse_entries(cache_from, cache_to), open_store, log=quiet) if (cache_from or cache_to) else None
        client = make_client(engine.unix_url)
        started = time.monotonic()
        client.solve(BuildRequest(context=str(self.ctx), image="bench/cache:1", network="none", cache=plan), log=quiet)
        seconds = time.monotonic() - started
        client.close()
        stores = plan.stores.values() if plan else []
        return seconds, sum(s.stats.bytes_read for s in stores), sum(s.stats.bytes_written for s in stores)

    def buildx(self, engine, cache_from: str) -> float:
        env = {**os.environ, "DOCKER_CONFIG": self.buildx_config or "", "DOCKER_HOST": engine.unix_url,
               "BUILDX_NO_DEFAULT_ATTESTATIONS": "1"}
        started = time.monotonic()
        subprocess.run(["docker", "buildx", "build", "--progress=quiet", "--network", "none", "--cache-from", cache_from,
                        "-t", "bench/cache:buildx", "--load", str(self.ctx)], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        return time.monotonic() - started

    def stop(self) -> None:
        for thing in reversed(self.started):
            try:
                thing.stop()
            except Exception:  # noqa: BLE001
                pass


def bench_cache(runs: int) -> int:
    """Cold build vs builds importing a cache from each location, each on a fresh engine; buildx on the same caches."""
    workdir = tempfile.mkdtemp(prefix="bc-", dir="/tmp")
    bench = CacheBench(workdir)
    locations = {
        "local dir": (f"type=local,dest={workdir}/cache,mode=max", f"type=local,src={workdir}/cache"),
        "sftp://": (f"sftp://store@{workdir}/sftp-cache", f"sftp://store@{workdir}/sftp-cache"),
        "s3:// (moto)": ("s3://moto@bench/cache/app", "s3://moto@bench/cache/app"),
        "registry": (f"type=registry,ref={bench.registry.host}/cache/app:b,mode=max", f"type=registry,ref={bench.registry.host}/cache/app:b"),
    }
    rows: list[tuple[str, list[float], str]] = []
    try:
        n = 0

        def fresh():
            nonlocal n
            n += 1
            return bench.engine(f"e{n}")

        cold = []
        for _ in range(runs):
            engine = fresh()
            cold.append(bench.build(engine)[0])
            engine.stop()
        rows.append(("cold build, fresh engine", cold, "-"))
        for name, (to, frm) in locations.items():
            engine = fresh()
            before = proc_io(bench.registry.pid)
            seconds, _, written = bench.build(engine, cache_to=to)
            after = proc_io(bench.registry.pid)
            engine.stop()
            written = written or after["rchar"] - before["rchar"]
            rows.append((f"cold build + export to {name}", [seconds], f"{written / MB:.1f} MB up"))
            times, moved = [], []
            for _ in range(runs):
                engine = fresh()
                before = proc_io(bench.registry.pid)
                seconds, read, _ = bench.build(engine, cache_from=frm)
                after = proc_io(bench.registry.pid)
                engine.stop()
                times.append(seconds)
                moved.append(read or after["wchar"] - before["wchar"])
            rows.append((f"artiload, cache_from {name}", times, f"{statistics.median(moved) / MB:.1f} MB down"))
            if bench.buildx_config and name in ("local dir", "registry"):
                times, moved = [], []
                for _ in range(runs):
                    engine = fresh()
                    before = proc_io(bench.registry.pid)
                    times.append(bench.buildx(engine, frm))
                    after = proc_io(bench.registry.pid)
                    engine.stop()
                    moved.append(after["wchar"] - before["wchar"])
                label = f"{statistics.median(moved) / MB:.1f} MB down" if name == "registry" else "n/a (in buildx)"
                rows.append((f"docker buildx build --cache-from, {name}", times, label))
    finally:
        bench.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    cold_median = statistics.median(cold)
    print(f"\nmedians of {runs} runs; each build on a fresh Docker 28 containerd-store engine; "
          "the Dockerfile's two RUN steps sleep 9 s and write 32 MB")
    print("| build | seconds (median) | runs | x cold | bytes moved |")
    print("|---|---|---|---|---|")
    for name, times, moved in rows:
        med = statistics.median(times)
        print(f"| {name} | {med:.2f} | {', '.join(f'{t:.2f}' for t in times)} | {med / cold_median:.2f} | {moved} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
