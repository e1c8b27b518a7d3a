"""BuildArtifactOperator's docker/oci exporters against ``docker buildx build --output`` (issue 9).

Both talk to the BuildKit inside the same private Docker 28 engine on the
containerd image store (the classic store's BuildKit has neither exporter).
The image: the busybox base plus one layer of ``--size`` random bytes, built
once to warm the cache, so each run measures the export: BuildKit
compressing the new layer and streaming the archive to a file. artiload runs
through ``BuildKitHook.build`` (the operator's code path); buildx through
Debian's docker-buildx plugin (fetched by scripts/fetch_engines.sh) with its
default ``docker`` driver. Each run is a fresh subprocess so RSS is its own.

    .venv/bin/python benchmarks/bench_exporters.py --size 256M --runs 3

Prints a table of MB/s (archive bytes / wall seconds), ratio and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import measure  # noqa: E402 - shared with the other benchmarks
from measure import Meter, parse_size, run_cli  # noqa: E402
MB = 1_000_000
TARGET = 1.0


def worker(job: dict) -> dict:
    """One export in this fresh process: artiload's, or buildx's as a child."""
    if job["tool"] == "buildx":
        env = {**os.environ, "DOCKER_CONFIG": job["docker_config"], "DOCKER_HOST": job["engine"]}
        argv = ["docker", "buildx", "build", "--network", "none", "--output", f"type={job['export']},dest={job['out']}",
                "-t", "bench/export:1", job["context"]]
        result = run_cli(argv, env=env, stderr=subprocess.PIPE)
        return {**result, "peak_kib": result["peak_rss_kib"]}
    os.environ["AIRFLOW_CONN_BENCH_BK"] = json.dumps(
        {"conn_type": "buildkit", "host": f"docker://{job['engine']}", "extra": {"network": "none"}}
    )
    from airflow_provider_artiload.hooks.buildkit import BuildKitHook

    hook = BuildKitHook("bench_bk")
    hook.endpoint  # noqa: B018 - parse the connection before measuring
    with Meter() as meter:  # the growth is the export's alone
        artifact = hook.build(context=job["context"], export=job["export"], output=job["out"], image="bench/export:1")
    hook.close()
    result = meter.result()
    return {**result, "peak_kib": result["growth_kib"], "layers": len(artifact["layers"])}


def run(job: dict, env: dict) -> dict:
    return measure.run_worker(__file__, job, env)


def docker_config(workdir: str) -> str:
    """A private DOCKER_CONFIG with the fetched buildx plugin (the machine's CLI has none)."""
    plugin = ROOT / ".engines" / "sid" / "root" / "usr" / "libexec" / "docker" / "cli-plugins" / "docker-buildx"
    if not plugin.exists():
        raise SystemExit(f"{plugin} is missing: run scripts/fetch_engines.sh")
    config = Path(workdir, "docker-config")
    (config / "cli-plugins").mkdir(parents=True)
    shutil.copy(plugin, config / "cli-plugins" / "docker-buildx")
    return str(config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="256M")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    import harness

    workdir = tempfile.mkdtemp(prefix="bx-", dir="/tmp")
    engine = harness.start_engine(os.path.join(workdir, "e"), name="bench", kind=harness.engine_kind("28-containerd"))
    env = {**os.environ, "AIRFLOW_HOME": os.path.join(workdir, "airflow"), "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
           "PYTHONPATH": str(ROOT)}
    rows = []
    try:
        harness.build_base_image(engine.socket_path)
        ctx = Path(workdir, "ctx")
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM {harness.BASE_TAG}\nRUN head -c {parse_size(args.size)} /dev/urandom > /blob\n")
        config = docker_config(workdir)
        base = {"engine": engine.unix_url, "context": str(ctx), "docker_config": config}
        for export in ("docker", "oci"):
            out = os.path.join(workdir, f"{export}.tar")
            run({**base, "tool": "artiload", "export": export, "out": out}, env)  # warm the build cache
            os.unlink(out)
            samples: dict[str, list[tuple[float, int]]] = {"buildx": [], "artiload": []}
            for i in range(args.runs):
                for tool in ("buildx", "artiload") if i % 2 == 0 else ("artiload", "buildx"):
                    result = run({**base, "tool": tool, "export": export, "out": out}, env)
                    samples[tool].append((os.path.getsize(out) / result["seconds"] / MB, result["peak_kib"]))
                    os.unlink(out)
            bx = statistics.median(s[0] for s in samples["buildx"])
            al = statistics.median(s[0] for s in samples["artiload"])
            rows.append((export, al, bx, max(s[1] for s in samples["artiload"]), max(s[1] for s in samples["buildx"])))
        version = subprocess.run(["docker", "-H", engine.unix_url, "version", "-f", "{{.Server.Version}}"],
                                 capture_output=True, text=True).stdout.strip()
    finally:
        engine.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nDocker {version}, containerd image store; {args.size} layer; medians of {args.runs} runs; "
          f"load average now {os.getloadavg()[0]:.2f}")
    print("| export | artiload MB/s | buildx MB/s | ratio | target | artiload peak RSS growth | buildx CLI peak RSS |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for export, al, bx, al_rss, bx_rss in rows:
        met = "yes" if al / bx >= TARGET else "NO"
        print(f"| {export} | {al:.0f} | {bx:.0f} | {al / bx:.2f} | >= {TARGET:.1f}x: {met} | "
              f"{al_rss / 1024:.0f} MiB | {bx_rss / 1024:.0f} MiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
