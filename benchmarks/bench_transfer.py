"""On-demand transfer benchmark: artiload against the docker CLI and OpenSSH (issue #2).

What is measured, for each image size (one big random layer on a busybox base):

1. local load: ``DockerEngineHook.load_archive`` over the unix socket vs
   ``docker -H unix://SOCK load -i x.tar``                   (target >= 1.0x)
2. SSH load: ``load_archive`` over SSH (paramiko direct-streamlocal) vs
   ``cat x.tar | ssh HOST docker -H unix://SOCK load`` with OpenSSH's
   default cipher                                              (target >= 1.2x)
3. save: ``DockerEngineHook.save_image`` vs ``docker save -o`` (target >= 1.0x);
   for context also ``docker save -o x.tar && openssl dgst -sha256 x.tar &&
   sync x.tar``, the CLI with what artiload's save guarantees besides (the
   file's sha256, the file on disk when it returns): a line under the table
   gives artiload's ratio against it, like for like. openssl, not coreutils'
   ``sha256sum``: Debian's has no SHA extensions and hashes 5x slower here,
   which would flatter artiload
4. memory: for each artiload transfer, peak RSS during it minus RSS just
   before it (VmHWM after, VmRSS before; VmHWM reset with
   ``/proc/self/clear_refs``)                                  (target < 64 MiB)
5. client CPU: user+system seconds per GiB of archive, artiload's process
   vs the CLI's processes; "CPU ratio" artiload/CLI for local load and save
                                                               (target <= 1.5x)

Per row: the median of ``--repeat`` runs and its median absolute deviation
(MAD), and the 1-minute load average at the start of each run (min-max over
the row's runs: other work on the machine skews MB/s).

The verdict cannot be fooled by noise: a ratio of two medians has the spread
``ratio * (MAD_a/median_a + MAD_b/median_b)`` (both tools' relative MADs).
For a target "at least T", the row says "met" only if ``ratio - T > spread``,
"NOT met" if ``T - ratio > spread``, and "within noise" otherwise; for "at
most T" (CPU) the same with the signs turned. The rule is printed under the
table (``measure.VERDICT_RULE``).

The physical limit: the engine's own import and export rate, from and to a
local file on the engine's host, is what ``docker load -i`` and ``docker save
-o`` reach here; a line "engine limit: import X MB/s, export Y MB/s" states it
per size.

``--busy N`` runs N CPU-bound processes (``measure.busy_processes``) beside
every transfer, artiload's and the CLI's alike: a stand-in for a worker that
runs other tasks. They are killed at the end, also on Ctrl-C or an error.

Every measurement runs in a fresh subprocess (``--worker``): artiload's so
that one transfer's peak cannot hide another's, the CLI's so that
``getrusage(RUSAGE_CHILDREN)`` gives the peak RSS of its processes alone.
MB/s is archive bytes (10^6) / wall seconds. Loads go into a target engine
that is empty before each run: the image is removed by ID with force and the
layer store is checked to be empty. Everything runs against private engines
and an sshd started by ``scripts/harness.py`` and stopped at the end.

Run (as root, not in CI), once per engine kind (``system``: the machine's
docker.io; ``28-classic`` / ``28-containerd``: Docker 28 from
scripts/fetch_engines.sh on either image store)::

    .venv/bin/python benchmarks/bench_transfer.py --sizes 256M,1G --repeat 3 --engine-kind 28-containerd
    .venv/bin/python benchmarks/bench_transfer.py --sizes 256M,1G --repeat 3 --busy 2   # a busy worker
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measure  # noqa: E402 - shared with the other benchmarks
from measure import (  # noqa: E402
    VERDICT_RULE, Meter, busy_processes, load_range, load_script, median_mad, parse_size, ratio_spread, run_cli,
    size_label, stop_all, verdict,
)

REPO = Path(__file__).resolve().parent.parent
MiB = 1 << 20
RSS_TARGET_MIB = 64
TARGETS = {"local load": 1.0, "ssh load": 1.2, "save": 1.0}  # artiload / baseline, MB/s: at least
CPU_TARGETS = {"local load": 1.5, "save": 1.5}  # artiload / baseline, client CPU s/GiB: at most


def load_harness() -> Any:
    """Import scripts/harness.py by path (it is not a package)."""
    return load_script("artiload_harness", REPO / "scripts" / "harness.py")


def docker_cli() -> str:
    for path in ("/usr/bin/docker", "/usr/local/bin/docker"):
        if os.access(path, os.X_OK):
            return path
    raise SystemExit("no docker CLI at /usr/bin/docker or /usr/local/bin/docker")


# ---------------------------------------------------------------- worker (runs in a fresh subprocess)


def worker(job: dict[str, Any]) -> dict[str, Any]:
    """Run one transfer and return its seconds and memory figures."""
    if job["op"] == "cli":
        return run_cli(job["cmd"])
    os.environ["AIRFLOW_CONN_BENCH"] = json.dumps(job["conn"])
    from airflow_provider_artiload.hooks.engine import DockerEngineHook  # after AIRFLOW_HOME is set

    hook = DockerEngineHook("bench")
    hook.endpoint  # read and parse the connection now, so that only the transfer is measured  # noqa: B018
    with Meter() as meter:
        if job["op"] == "save":
            hook.save_image(job["image"], job["path"])
        else:
            hook.load_archive(job["path"], skip_existing=False)
    hook.close()
    return meter.result()


def run_worker(job: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    return measure.run_worker(__file__, job, env)


# ---------------------------------------------------------------- setup


@dataclass
class Rig:
    harness: Any
    work: str
    source: Any = None
    target: Any = None
    sshd: Any = None
    docker: str = field(default_factory=docker_cli)
    env: dict[str, str] = field(default_factory=dict)
    targets: list[Any] = field(default_factory=list)  # every target engine; ``target`` is the first

    def stop(self) -> None:
        stop_all((self.sshd, *self.targets, self.source), self.work)

    def cli(self, engine: Any, *args: str) -> str:
        argv = [self.docker, "-H", engine.unix_url, *args]
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout

    def unix_conn(self, engine: Any) -> dict[str, Any]:
        return {"conn_type": "docker_engine", "host": engine.unix_url, "extra": {}}

    def ssh_conn(self, engine: Any) -> dict[str, Any]:
        host = f"ssh://{self.sshd.user}@{self.sshd.host}:{self.sshd.port}{engine.socket_path}"
        extra = {"key_file": self.sshd.client_key, "known_hosts": self.sshd.known_hosts, "look_for_keys": "false"}
        return {"conn_type": "docker_engine", "host": host, "extra": extra}


def start_rig(harness: Any, *, targets: int = 1, sshd: bool = True) -> Rig:
    """A source engine, ``targets`` target engines (``dst``, ``dst1``, ...) and, with ``sshd``, an sshd."""
    rig = Rig(harness, tempfile.mkdtemp(prefix="ab-", dir="/tmp"))
    airflow_home = os.path.join(rig.work, "airflow")
    os.makedirs(airflow_home)
    rig.env = {**os.environ, "AIRFLOW_HOME": airflow_home, "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
               "PYTHONPATH": str(REPO)}
    try:
        rig.source = harness.start_engine(os.path.join(rig.work, "src"), name="source")
        for i in range(targets):
            suffix = str(i) if i else ""
            rig.targets.append(harness.start_engine(os.path.join(rig.work, f"dst{suffix}"), name=f"target{suffix}"))
        rig.target = rig.targets[0]
        if sshd:
            rig.sshd = harness.start_sshd(os.path.join(rig.work, "ssh"))
    except BaseException:
        rig.stop()
        raise
    return rig


def build_test_image(rig: Rig, size: int) -> tuple[str, str, str]:
    """Build the image in the source engine and save it once as the load input: (tag, id, tar path)."""
    tag = f"artiload-bench/blob:{size // MiB}m"
    dockerfile = f"FROM {rig.harness.BASE_TAG}\nRUN head -c {size} /dev/urandom > /blob\n"
    image_id = rig.harness.build_image(rig.source.socket_path, tag, dockerfile)
    tar = os.path.join(rig.work, f"input-{size // MiB}m.tar")
    rig.cli(rig.source, "save", "-o", tar, tag)
    return tag, image_id, tar


def empty_target(rig: Rig, image_id: str, engine: Any = None) -> None:
    """Remove the loaded image by ID from ``engine`` (default: the rig's target) and check that no image or
    layer is left."""
    engine = engine or rig.target
    if rig.cli(engine, "images", "-aq", "--no-trunc").strip():
        rig.cli(engine, "rmi", "-f", image_id)
    left = rig.cli(engine, "images", "-aq", "--no-trunc").strip()
    layers = [p for d in glob.glob(os.path.join(engine.workdir, "root/image/*/layerdb/sha256"))
              for p in os.listdir(d)]  # classic store; the containerd store's content goes with its last image
    blobs = glob.glob(os.path.join(engine.workdir, "root/containerd/daemon/io.containerd.content.v1.content/blobs/sha256/*"))
    if blobs:
        raise RuntimeError(f"target engine keeps {len(blobs)} blobs after the image was removed: a later load would skip them")
    if left or layers:
        raise RuntimeError(f"target engine not empty: images {left!r}, layers {layers}")


# ---------------------------------------------------------------- measurements


@dataclass
class Sample:
    op: str
    size: int
    tool: str
    mbps: float
    peak_kib: int
    growth_kib: int | None
    cpu_s: float  # the client's CPU seconds per GiB: artiload's process, or the CLI's processes
    busy: float  # of all cores, during the transfer
    load1: float  # the 1-minute load average as the run started
    steal: float = 0.0  # of all cores, taken by the hypervisor during the transfer


def measure_load(rig: Rig, size: int, image_id: str, tar: str, repeat: int) -> list[Sample]:
    nbytes = os.path.getsize(tar)
    sock = rig.target.unix_url
    ssh = shlex.join(rig.sshd.ssh_command() + [rig.docker, "-H", sock, "load"])
    jobs = {
        ("local load", "docker load -i"): {"op": "cli", "cmd": shlex.join([rig.docker, "-H", sock, "load", "-i", tar])},
        ("local load", "artiload unix"): {"op": "load", "conn": rig.unix_conn(rig.target), "path": tar},
        ("ssh load", "cat->ssh docker load"): {"op": "cli", "cmd": f"cat {shlex.quote(tar)} | {ssh}"},
        ("ssh load", "artiload ssh"): {"op": "load", "conn": rig.ssh_conn(rig.target), "path": tar},
    }
    samples = []
    empty_target(rig, image_id)
    for r in range(repeat):
        order = list(jobs.items()) if r % 2 == 0 else list(reversed(jobs.items()))  # alternate to even out drift
        for (op, tool), job in order:
            result = run_worker(job, rig.env)
            loaded = rig.cli(rig.target, "image", "inspect", "-f", "{{.Id}}", image_id).strip()
            if loaded != image_id:
                raise RuntimeError(f"{tool}: target holds {loaded!r}, expected {image_id}")
            empty_target(rig, image_id)
            samples.append(_sample(op, size, tool, nbytes, result))
    return samples


def measure_save(rig: Rig, size: int, tag: str, nbytes: int, repeat: int) -> list[Sample]:
    out = os.path.join(rig.work, "saved.tar")
    save = shlex.join([rig.docker, "-H", rig.source.unix_url, "save", "-o", out, tag])
    jobs = {
        "docker save -o": {"op": "cli", "cmd": save},
        "artiload unix": {"op": "save", "conn": rig.unix_conn(rig.source), "image": tag, "path": out},
        LIKE_FOR_LIKE["save"]: {"op": "cli",
                                "cmd": f"{save} && openssl dgst -sha256 {shlex.quote(out)} && sync {shlex.quote(out)}"},
    }
    samples = []
    for r in range(repeat):
        order = list(jobs.items()) if r % 2 == 0 else list(reversed(jobs.items()))
        for tool, job in order:
            result = run_worker(job, rig.env)
            if os.path.getsize(out) != nbytes:
                raise RuntimeError(f"{tool}: saved {os.path.getsize(out)} bytes, expected {nbytes}")
            os.unlink(out)
            samples.append(_sample("save", size, tool, nbytes, result))
    return samples


def _sample(op: str, size: int, tool: str, nbytes: int, result: dict[str, Any]) -> Sample:
    return Sample(op, size, tool, nbytes / result["seconds"] / 1e6, result["peak_rss_kib"], result.get("growth_kib"),
                  result["cpu_s"] * (1 << 30) / nbytes, result["machine_busy"], result["load1"], result.get("steal", 0.0))


# ---------------------------------------------------------------- report

BASELINES = {"local load": "docker load -i", "ssh load": "cat->ssh docker load", "save": "docker save -o"}
# context, not a target: the CLI doing what artiload's save also does (hash the file, have it on disk at the end)
LIKE_FOR_LIKE = {"save": "docker save -o + openssl sha256 + sync"}


def report(samples: list[Sample]) -> None:
    """One row per tool: MB/s and the ratio with their spread, and the client CPU and machine load that explain it."""
    print("| operation | size | tool | MB/s median ± MAD | ratio ± spread | speed target | speed | "
          "client CPU s/GiB ± MAD | CPU ratio ± spread | CPU target | CPU | machine busy | load1 at start | "
          "peak RSS growth | memory |")
    print("|---|---|---|---:|---:|---|---|---:|---:|---|---|---:|---:|---:|---|")
    groups: dict[tuple[str, int], dict[str, list[Sample]]] = {}
    for s in samples:
        groups.setdefault((s.op, s.size), {}).setdefault(s.tool, []).append(s)
    for (op, size), tools in groups.items():
        for tool, runs in tools.items():
            mbps, mbps_mad = median_mad(s.mbps for s in runs)
            cpu, cpu_mad = median_mad(s.cpu_s for s in runs)
            busy = statistics.median(s.busy for s in runs)
            steal = max(s.steal for s in runs)
            common = f"| {op} | {size_label(size)} | {tool} | {mbps:.0f} ± {mbps_mad:.0f} | "
            machine = f"{busy:.0%} (steal max {steal:.0%}) | {load_range(s.load1 for s in runs)} |"
            if tool == BASELINES[op]:
                peak = max(s.peak_kib for s in runs) / 1024
                print(f"{common}1.00 (baseline) | - | - | {cpu:.2f} ± {cpu_mad:.2f} | 1.00 (baseline) | - | - | "
                      f"{machine} (CLI peak RSS {peak:.0f} MiB) | - |")
                continue
            ratio, spread, cpu_ratio, cpu_spread = compare(runs, tools[BASELINES[op]])
            if tool == LIKE_FOR_LIKE.get(op):
                print(f"{common}{ratio:.2f} ± {spread:.2f} | (context) | - | {cpu:.2f} ± {cpu_mad:.2f} | "
                      f"{cpu_ratio:.2f} ± {cpu_spread:.2f} | (context) | - | {machine} - | - |")
                continue
            speed = verdict(ratio, TARGETS[op], spread)
            if op in CPU_TARGETS:
                cpu_target, cpu_verdict = f"<= {CPU_TARGETS[op]:.1f}x", verdict(cpu_ratio, CPU_TARGETS[op], cpu_spread,
                                                                                at_most=True)
            else:
                cpu_target, cpu_verdict = "-", "-"
            growth = max(s.growth_kib or 0 for s in runs) / 1024
            print(f"{common}{ratio:.2f} ± {spread:.2f} | >= {TARGETS[op]:.1f}x | {speed} | {cpu:.2f} ± {cpu_mad:.2f} | "
                  f"{cpu_ratio:.2f} ± {cpu_spread:.2f} | {cpu_target} | {cpu_verdict} | {machine} "
                  f"{growth:.1f} MiB (max) | {'yes' if growth < RSS_TARGET_MIB else 'NO'} (< {RSS_TARGET_MIB} MiB) |")
    print(f"\n{VERDICT_RULE}")
    print("client CPU: user+system seconds per GiB of archive, of artiload's process or of the CLI's processes "
          "(for the pipe: cat and ssh; the remote docker CLI runs under sshd and is not counted);\n"
          "machine busy: share of all cores busy during the transfer (engine, sshd and client together), and the "
          "largest share the hypervisor took (steal) in any of the row's runs: a row with steal above a few percent "
          "measured the host, not the tools;\n"
          "load1 at start: the 1-minute load average as each run started, min-max over the row's runs.")
    for (op, size), tools in groups.items():
        if LIKE_FOR_LIKE.get(op) in tools and "artiload unix" in tools:
            print(like_for_like(op, size, tools["artiload unix"], tools[LIKE_FOR_LIKE[op]]))
    for size in sorted({size for _, size in groups}):
        imp = statistics.median(s.mbps for s in groups[("local load", size)]["docker load -i"])
        exp = statistics.median(s.mbps for s in groups[("save", size)]["docker save -o"])
        print(f"engine limit ({size_label(size)}): import {imp:.0f} MB/s, export {exp:.0f} MB/s "
              "(docker load -i / docker save -o: the engine's own rate from/to a local file on its host)")


def compare(ours: list[Sample], theirs: list[Sample]) -> tuple[float, float, float, float]:
    """(MB/s ratio, its spread, client CPU ratio, its spread) of ``ours`` against ``theirs``: ratios of medians."""
    mbps, mbps_mad = median_mad(s.mbps for s in ours)
    base, base_mad = median_mad(s.mbps for s in theirs)
    cpu, cpu_mad = median_mad(s.cpu_s for s in ours)
    base_cpu, base_cpu_mad = median_mad(s.cpu_s for s in theirs)
    ratio = mbps / base
    cpu_ratio = cpu / base_cpu if base_cpu else float("inf")
    return (ratio, ratio_spread(ratio, mbps, mbps_mad, base, base_mad),
            cpu_ratio, ratio_spread(cpu_ratio, cpu, cpu_mad, base_cpu, base_cpu_mad))


def like_for_like(op: str, size: int, ours: list[Sample], theirs: list[Sample]) -> str:
    """artiload against the CLI doing the same work (context for the target, which is against the bare CLI)."""
    ratio, spread, cpu_ratio, cpu_spread = compare(ours, theirs)
    return (f"{op} like for like ({size_label(size)}): artiload / ({LIKE_FOR_LIKE[op]}) = "
            f"{ratio:.2f} ± {spread:.2f} in MB/s, {cpu_ratio:.2f} ± {cpu_spread:.2f} in client CPU")


def report_raw(samples: list[Sample]) -> None:
    print("\nRaw per-repeat numbers (MB/s; client CPU s/GiB; peak RSS; artiload: RSS growth during the transfer):")
    for s in samples:
        growth = f", growth {s.growth_kib / 1024:.1f} MiB" if s.growth_kib is not None else ""
        print(f"  {s.op:10} {size_label(s.size):7} {s.tool:22} {s.mbps:7.1f} MB/s  cpu {s.cpu_s:5.2f} s/GiB  "
              f"busy {s.busy:4.0%}  steal {s.steal:4.0%}  load1 {s.load1:5.2f}  peak {s.peak_kib / 1024:6.1f} MiB{growth}")


def machine_info(rig: Rig, load_at_start: tuple[float, float, float], busy: int = 0) -> None:
    version = rig.cli(rig.target, "version", "-f", "{{.Server.Version}} (API {{.Server.APIVersion}})").strip()
    ssh_version = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    import paramiko  # noqa: PLC0415 - only for the version line

    print(f"Machine: {platform.node()}, nproc {os.cpu_count()}, {platform.platform()}, Python {platform.python_version()}")
    store = rig.cli(rig.target, "info", "-f", "{{.Driver}} {{.DriverStatus}}").strip()
    print(f"Engine: Docker {version}, kind {os.environ.get('ARTILOAD_TEST_ENGINE')}, storage {store}; "
          f"CLI {rig.docker}; {ssh_version}; paramiko {paramiko.__version__}")
    loads = lambda la: "/".join(f"{x:.2f}" for x in la)  # noqa: E731
    print(f"Busy processes beside every transfer (--busy): {busy}" + (" CPU-bound (sha256 loops)" if busy else ""))
    print(f"Load average (1/5/15 min) at start {loads(load_at_start)}, at end {loads(os.getloadavg())}"
          " (other work on this machine skews the MB/s)\n")


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="256M,1G", help="comma-separated layer sizes (K/M/G suffixes)")
    measure.add_common_args(parser)
    args = parser.parse_args(argv)
    if measure.as_worker(args, worker):
        return 0
    started, load_at_start = time.monotonic(), os.getloadavg()
    harness = load_harness()
    rig = start_rig(harness)
    samples: list[Sample] = []
    try:
        harness.build_base_image(rig.source.socket_path)
        for size in [parse_size(s) for s in args.sizes.split(",")]:
            print(f"building and measuring {size_label(size)} ...", file=sys.stderr, flush=True)
            tag, image_id, tar = build_test_image(rig, size)
            with busy_processes(args.busy):
                samples += measure_load(rig, size, image_id, tar, args.repeat)
                samples += measure_save(rig, size, tag, os.path.getsize(tar), args.repeat)
            os.unlink(tar)
        machine_info(rig, load_at_start, args.busy)
    finally:
        rig.stop()
    report(samples)
    report_raw(samples)
    print(f"\n{' '.join(sys.argv)}: {time.monotonic() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
