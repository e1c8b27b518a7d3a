"""Benchmark artiload's BuildKit client against the BuildKit inside a private Docker Engine.

    python benchmarks/bench_build.py                       # starts (and stops) its own engine
    python benchmarks/bench_build.py --engine unix:///path/docker.sock --runs 3

Prints a table:
- context upload MB/s: 300 MB in one file plus 2,000 small files (every
  file touched before each run, so the daemon requests all of them again),
  timed from the daemon's first FileSync call to the last one's end;
- ``tar`` export MB/s and peak RSS growth (peak minus the RSS just before)
  for an image with a 500 MB layer, against ``docker save -o`` of the same image.
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args()
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


if __name__ == "__main__":
    sys.exit(main())
