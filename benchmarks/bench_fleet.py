"""On-demand benchmark: a mixed fleet served from ONE read of a 2-platform artifact (issue 17).

Five private engines, all started here: a Docker 28 containerd-store builder, and four targets,
each empty at the start of every run:

- Docker 20.10 (the machine's docker.io, classic store), amd64;
- Docker 28 classic store, amd64;
- Docker 28 containerd store, amd64;
- Docker 20.10 whose connection says ``platform: linux/arm64``: an amd64 engine with QEMU STANDING IN
  for an arm64 host (there is none here).

The artifact: linux/amd64 + linux/arm64 in one OCI index (``BuildArtifactOperator(platforms=...)``),
each platform with its own ``--size`` random layer (the arm64 one written under QEMU).

- **artiload**: one ``DockerLoadOperator`` call, the four targets, the artifact read once; each target
  is sent its platform's image only.
- **per-target loop**: what one does without it: for each target, ``docker save --platform X IMAGE |
  docker load`` from the builder (which holds the multi-platform image), one after the other.

Reported: bytes read from the source, bytes sent to each target and in total, wall seconds (median of
``--repeat``), and what each target ended up running (``uname -m``).

Run (as root, not in CI; needs scripts/setup_lab.sh: Docker 28, QEMU's aarch64 handler, the arm64 busybox)::

    .venv/bin/python benchmarks/bench_fleet.py --size 64M --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="al-bench-airflow-"))
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"

import harness  # noqa: E402

MiB = 1 << 20
DOCKERFILE = """\
FROM scratch
ARG TARGETARCH
COPY busybox-${TARGETARCH} /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN uname -m > /arch && head -c {size} /dev/urandom > /blob
"""
TARGETS = (  # (name, engine kind, the connection's platform extra or None)
    ("20.10-classic", "system", None),
    ("28-classic", "28-classic", None),
    ("28-containerd", "28-containerd", None),
    ("arm64 (QEMU stand-in)", "system", "linux/arm64"),
)


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper()
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def cli(engine: harness.Engine, *args: str, **kwargs) -> str:
    return subprocess.run(["docker", "-H", engine.unix_url, *args], check=True, capture_output=True, text=True,
                          **kwargs).stdout


def empty(engine: harness.Engine) -> None:
    ids = cli(engine, "images", "-aq", "--no-trunc").split()
    if ids:
        subprocess.run(["docker", "-H", engine.unix_url, "rmi", "-f", *sorted(set(ids))], capture_output=True)
    subprocess.run(["docker", "-H", engine.unix_url, "builder", "prune", "-af"], capture_output=True)


def conn(name: str, engine: harness.Engine, platform: str | None = None, kind: str = "docker_engine") -> str:
    extra = {"platform": platform} if platform else {}
    host = f"docker://{engine.unix_url}" if kind == "buildkit" else engine.unix_url
    if kind == "buildkit":
        extra = {"network": "none"}
    os.environ[f"AIRFLOW_CONN_{name.upper()}"] = json.dumps({"conn_type": kind, "host": host, "extra": extra})
    return name


def setup_lab() -> tuple[bytes, bytes]:
    for script in ("setup_qemu.sh", "fetch_arm64.sh"):
        subprocess.run(["bash", str(ROOT / "scripts" / script)], check=True)
    arm64 = (ROOT / ".engines" / "arm64" / "busybox").read_bytes()
    amd64 = Path(shutil.which("busybox") or "/bin/busybox").read_bytes()
    return arm64, amd64


def build(builder: harness.Engine, work: Path, size: int, arm64: bytes, amd64: bytes) -> tuple[dict, str]:
    from airflow_provider_artiload.operators import BuildArtifactOperator

    context = work / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE.replace("{size}", str(size)))
    for arch, data in (("arm64", arm64), ("amd64", amd64)):
        (context / f"busybox-{arch}").write_bytes(data)
        (context / f"busybox-{arch}").chmod(0o755)
    builder_conn = conn("bench_builder", builder, kind="buildkit")
    image = "bench/fleet:1"
    common = dict(context=str(context), image=image, platforms=["linux/amd64", "linux/arm64"], buildkit_conn_id=builder_conn)
    artifact = BuildArtifactOperator(task_id="oci", export="oci", output=str(work / "fleet.tar"), **common).execute({})
    BuildArtifactOperator(task_id="image", export="image", **common).execute({})  # the baseline saves from here
    return artifact, image


def run_artiload(artifact: dict, targets: list[tuple[str, harness.Engine, str | None]]) -> tuple[float, list[dict]]:
    from airflow_provider_artiload.operators import DockerLoadOperator

    conns = [conn(f"bench_t{i}", engine, platform) for i, (_, engine, platform) in enumerate(targets)]
    started = time.monotonic()
    result = DockerLoadOperator(task_id="load", source=artifact, engine_conn_id=conns, tag="bench/fleet:1").execute({})
    return time.monotonic() - started, result["targets"]


def run_loop(builder: harness.Engine, image: str, targets: list[tuple[str, harness.Engine, str | None]]) -> tuple[float, list[int]]:
    sent = []
    started = time.monotonic()
    for _, engine, platform in targets:
        save = subprocess.Popen(["docker", "-H", builder.unix_url, "save", "--platform", platform or "linux/amd64", image],
                                stdout=subprocess.PIPE)
        load = subprocess.Popen(["docker", "-H", engine.unix_url, "load", "-q"], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL)
        count = 0
        assert save.stdout is not None and load.stdin is not None
        while chunk := save.stdout.read(MiB):
            count += len(chunk)
            load.stdin.write(chunk)
        load.stdin.close()
        if save.wait() or load.wait():
            raise RuntimeError(f"docker save --platform {platform} | docker load failed")
        sent.append(count)
    return time.monotonic() - started, sent


def machine(engine: harness.Engine, image: str) -> str:
    return cli(engine, "run", "--rm", "--network", "none", image, "uname", "-m").strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="64M", help="random bytes in each platform's layer (default 64M)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = parse_size(args.size)
    arm64, amd64 = setup_lab()
    work = Path(tempfile.mkdtemp(prefix="al-bench-fleet-", dir="/tmp"))
    engines: list[harness.Engine] = []
    try:
        builder = harness.start_engine(work / "b", name="builder", kind=harness.engine_kind("28-containerd"))
        engines.append(builder)
        targets = []
        for i, (name, kind, platform) in enumerate(TARGETS):
            engine = harness.start_engine(work / f"t{i}", name=f"t{i}", kind=harness.engine_kind(kind))
            engines.append(engine)
            targets.append((name, engine, platform))
        artifact, image = build(builder, work, size, arm64, amd64)
        shares = {p["platform"]: p for p in artifact["platforms"]}
        ours, theirs, last_ours, last_theirs = [], [], [], []
        for _ in range(args.repeat):
            for _, engine, _ in targets:
                empty(engine)
            seconds, outcomes = run_artiload(artifact, targets)
            ours.append(seconds)
            last_ours = outcomes
            ran_ours = [machine(engine, "bench/fleet:1") for _, engine, _ in targets]
            for _, engine, _ in targets:
                empty(engine)
            seconds, sent = run_loop(builder, image, targets)
            theirs.append(seconds)
            last_theirs = sent
            ran_theirs = [machine(engine, image) for _, engine, _ in targets]
        print(f"\nartifact: {artifact['size'] / MiB:.1f} MiB, platforms {', '.join(shares)}; "
              f"{args.size} random per platform; medians of {args.repeat}\n")
        print("| target | platform | uname -m (artiload / loop) | artiload bytes sent | loop bytes (save --platform) |")
        print("|---|---|---|---:|---:|")
        for (name, _, _), outcome, sent, a, b in zip(targets, last_ours, last_theirs, ran_ours, ran_theirs):
            print(f"| {name} | {outcome['platform']} | {a} / {b} | {outcome['bytes_sent'] / MiB:.1f} MiB | {sent / MiB:.1f} MiB |")
        total_ours = sum(o["bytes_sent"] for o in last_ours)
        print(f"\n| | source read | sent to targets | wall seconds |\n|---|---:|---:|---:|")
        print(f"| artiload, one call | {artifact['size'] / MiB:.1f} MiB once | {total_ours / MiB:.1f} MiB | {statistics.median(ours):.1f} |")
        print(f"| save --platform \\| load, per target | {sum(last_theirs) / MiB:.1f} MiB (4 saves) | {sum(last_theirs) / MiB:.1f} MiB "
              f"| {statistics.median(theirs):.1f} |")
        print(f"\nruns (s): artiload {[round(s, 1) for s in ours]}, loop {[round(s, 1) for s in theirs]}")
    finally:
        for engine in engines:
            with contextlib.suppress(Exception):
                engine.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
