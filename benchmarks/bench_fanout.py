"""On-demand fan-out benchmark: one load call into several engines, one of them slow (issue 21).

(a) **a slow target must not pace the others.** Four local target engines, one
    of them behind ``scripts/throttle.py`` (``Throttle(socket, rate=8e6)``: 8 MB/s
    towards the engine, a cellular link's stand-in). Measured: the three fast
    targets on their own (one ``DockerLoadOperator`` call into the three), then one
    call into all four (``max_parallel=4``); per target, the ``seconds`` of its
    ``LoadOutcome``, and the call's wall. Target: every fast target's seconds in
    the four-target call is at most 1.5x its seconds on its own.
(b) **eight engines at once.** Eight local target engines: one artiload call
    (``max_parallel=8``) against eight ``docker -H unix://SOCK load -i x.tar``
    started at once (wall until the last ends); a loop of the eight, one after
    the other, for context. MB/s is 8 x archive bytes / wall. Target: artiload's
    MB/s at least 1.0x that of the eight parallel CLIs. One untimed round of
    the CLIs comes first, so that no engine's first load ever is timed.

Every run is a fresh subprocess (``--worker``), as in bench_transfer.py: artiload's
wall is the operator's ``execute`` (planning, streaming, tagging; not the
interpreter's start), the CLIs' is from their start until the last exits. Every
target engine is emptied (image removed by ID, store checked empty) before each
run, and checked to hold the image after it. Order alternates between repeats.

Per row: median of ``--repeat`` runs with its median absolute deviation (MAD),
and the 1-minute load average at the start of each run (min-max). Verdict, as in
bench_transfer.py (``measure.VERDICT_RULE``): spread = ratio x (MAD_a/median_a +
MAD_b/median_b); "met" only if the margin beyond the target is wider than the
spread, "NOT met" if the shortfall is, else "within noise".

``--busy N``: N CPU-bound processes beside every run (``measure.busy_processes``).

Run (as root, not in CI), once per engine kind::

    .venv/bin/python benchmarks/bench_fanout.py --size 64M --repeat 3 --engine-kind 28-containerd
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_transfer as bt  # noqa: E402 - the rig, image and emptying are shared
import measure  # noqa: E402
from measure import (  # noqa: E402
    VERDICT_RULE, Meter, busy_processes, load_range, load_script, median_mad, parse_size, ratio_spread, run_cli,
    run_cli_parallel, size_label, verdict,
)

SLOW_RATE = 8e6  # bytes/s towards the throttled engine
ALONE_TARGET = 1.5  # (a): a fast target's seconds in the 4-target call / alone, at most
PARALLEL_TARGET = 1.0  # (b): artiload MB/s / 8 parallel CLIs' MB/s, at least
FAST = 3  # (a): fast targets beside the slow one
WIDE = 8  # (b): targets


# ---------------------------------------------------------------- worker (runs in a fresh subprocess)


def worker(job: dict[str, Any]) -> dict[str, Any]:
    """One run: the CLI (``cli``), the CLIs at once (``cli_parallel``), or one artiload call into ``conns``."""
    if job["op"] == "cli":
        return run_cli(job["cmd"])
    if job["op"] == "cli_parallel":
        return run_cli_parallel(job["cmds"])
    names = []
    for i, conn in enumerate(job["conns"]):
        os.environ[f"AIRFLOW_CONN_BENCH{i}"] = json.dumps(conn)
        names.append(f"bench{i}")
    from airflow_provider_artiload.operators import DockerLoadOperator  # after AIRFLOW_HOME is set

    operator = DockerLoadOperator(task_id="load", source=job["path"], engine_conn_id=names,
                                  max_parallel=job["max_parallel"], skip_existing=False)
    for hook in operator.hooks:  # read and parse the connections now, so that only the load is measured
        hook.endpoint  # noqa: B018
    with Meter() as meter:
        result = operator.execute({})
    out = meter.result()
    out["targets"] = [{"engine": t["engine"], "seconds": t["seconds"], "mode": t["mode"]} for t in result["targets"]]
    return out


def run_worker(job: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    return measure.run_worker(__file__, job, env)


# ---------------------------------------------------------------- runs


class Runs:
    """Samples by row key: each a dict with seconds, load1 and (for MB/s rows) bytes."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], list[dict[str, float]]] = {}

    def add(self, key: tuple[str, str], seconds: float, run: dict[str, Any], nbytes: int = 0) -> None:
        """``seconds`` of one run (the call's, or one target's), with the machine's state during the call ``run``."""
        self.rows.setdefault(key, []).append({"seconds": seconds, "load1": run["load1"], "steal": run["steal"],
                                              "mbps": nbytes / seconds / 1e6})

    def seconds(self, key: tuple[str, str]) -> tuple[float, float]:
        return median_mad(s["seconds"] for s in self.rows[key])

    def mbps(self, key: tuple[str, str]) -> tuple[float, float]:
        return median_mad(s["mbps"] for s in self.rows[key])

    def load(self, key: tuple[str, str]) -> str:
        return load_range(s["load1"] for s in self.rows[key])


def load_call(rig: bt.Rig, engines: list[Any], conns: list[dict[str, Any]], tar: str, image_id: str) -> dict[str, Any]:
    """One artiload call into ``conns`` (the addresses of ``engines``, in order); each checked, then emptied."""
    result = run_worker({"op": "load", "conns": conns, "path": tar, "max_parallel": len(conns)}, rig.env)
    check_and_empty(rig, engines, image_id)
    return result


def check_and_empty(rig: bt.Rig, engines: list[Any], image_id: str) -> None:
    for engine in engines:
        loaded = rig.cli(engine, "image", "inspect", "-f", "{{.Id}}", image_id).strip()
        if loaded != image_id:
            raise RuntimeError(f"{engine.name}: holds {loaded!r}, expected {image_id}")
        bt.empty_target(rig, image_id, engine)


def measure_slow(rig: bt.Rig, tar: str, image_id: str, repeat: int, runs: Runs) -> None:
    """(a): the three fast targets in one call on their own, then all four with the slow one behind the throttle."""
    throttle_mod = load_script("artiload_throttle", bt.REPO / "scripts" / "throttle.py")
    fast, slow = rig.targets[:FAST], rig.targets[FAST]
    with throttle_mod.Throttle(slow.socket_path, SLOW_RATE) as throttle:
        slow_conn = {"conn_type": "docker_engine", "host": throttle.url, "extra": {}}
        conns = [rig.unix_conn(e) for e in fast] + [slow_conn]
        for r in range(repeat):
            steps = ["alone", "all"] if r % 2 == 0 else ["all", "alone"]
            for step in steps:
                if step == "alone":  # the "on their own": the three fast ones in one call, no slow one
                    result = load_call(rig, fast, conns[:FAST], tar, image_id)
                    for i, outcome in enumerate(result["targets"]):
                        runs.add(("a", f"alone: fast {i + 1}"), outcome["seconds"], result)
                else:
                    result = load_call(rig, [*fast, slow], conns, tar, image_id)
                    for i, outcome in enumerate(result["targets"]):
                        name = f"fast {i + 1}" if i < FAST else f"slow (throttled {SLOW_RATE / 1e6:.0f} MB/s)"
                        runs.add(("a", f"4 targets: {name}"), outcome["seconds"], result)
                    runs.add(("a", "4 targets: wall of the call"), result["seconds"], result)


def measure_wide(rig: bt.Rig, tar: str, image_id: str, repeat: int, runs: Runs) -> None:
    """(b): one artiload call into eight engines against eight CLIs at once, and a loop of them."""
    engines = rig.targets[:WIDE]
    nbytes = os.path.getsize(tar) * len(engines)
    argvs = [[rig.docker, "-H", e.unix_url, "load", "-i", tar] for e in engines]
    jobs = {
        "artiload, one call (max_parallel=8)": {"op": "load", "conns": [rig.unix_conn(e) for e in engines],
                                                "path": tar, "max_parallel": len(engines)},
        "8 x docker load -i, at once": {"op": "cli_parallel", "cmds": argvs},
        "8 x docker load -i, one after the other": {"op": "cli", "cmd": " && ".join(shlex.join(a) for a in argvs)},
    }
    # an untimed load into each engine first: (a) used only four of them, and an engine's first load ever is slower
    # (run D: 4.63 s against 3.6 s), which counted against whichever tool went first
    run_worker(jobs["8 x docker load -i, at once"], rig.env)
    check_and_empty(rig, engines, image_id)
    for r in range(repeat):
        order = list(jobs.items()) if r % 2 == 0 else list(reversed(jobs.items()))
        for tool, job in order:
            result = run_worker(job, rig.env)
            check_and_empty(rig, engines, image_id)
            runs.add(("b", tool), result["seconds"], result, nbytes)
            if "targets" in result:
                for outcome in result["targets"]:
                    runs.add(("b", "artiload per target"), outcome["seconds"], result)


# ---------------------------------------------------------------- report


def report(runs: Runs, size: int, nbytes: int) -> None:
    print(f"(a) slow target: {FAST} fast targets + 1 behind a {SLOW_RATE / 1e6:.0f} MB/s throttle; "
          f"{size_label(size)} layer, archive {nbytes / 1e6:.1f} MB\n")
    print("| measurement | target | seconds median ± MAD | load1 at start | vs alone ± spread | target | verdict |")
    print("|---|---|---:|---:|---:|---|---|")
    for i in range(FAST):
        key = ("a", f"alone: fast {i + 1}")
        med, dev = runs.seconds(key)
        print(f"| {FAST} fast targets, no slow one | fast {i + 1} | {med:.2f} ± {dev:.2f} | {runs.load(key)} | - | - | - |")
    for i in range(FAST):
        key, alone = ("a", f"4 targets: fast {i + 1}"), runs.seconds(("a", f"alone: fast {i + 1}"))
        med, dev = runs.seconds(key)
        ratio = med / alone[0]
        spread = ratio_spread(ratio, med, dev, *alone)
        print(f"| 4 targets, max_parallel=4 | fast {i + 1} | {med:.2f} ± {dev:.2f} | {runs.load(key)} | "
              f"{ratio:.2f} ± {spread:.2f} | <= {ALONE_TARGET:.1f}x | {verdict(ratio, ALONE_TARGET, spread, at_most=True)} |")
    for name in (f"slow (throttled {SLOW_RATE / 1e6:.0f} MB/s)", "wall of the call"):
        key = ("a", f"4 targets: {name}")
        med, dev = runs.seconds(key)
        print(f"| 4 targets, max_parallel=4 | {name} | {med:.2f} ± {dev:.2f} | {runs.load(key)} | - | - | - |")
    print(f"\nthe slow target's floor: {nbytes / SLOW_RATE:.1f} s (archive bytes / {SLOW_RATE / 1e6:.0f} MB/s)")

    print(f"\n(b) {WIDE} targets, {size_label(size)} layer each; MB/s = {WIDE} x archive bytes / wall\n")
    print("| tool | wall seconds median ± MAD | MB/s median ± MAD | load1 at start | ratio ± spread | target | verdict |")
    print("|---|---:|---:|---:|---:|---|---|")
    ours, base = ("b", "artiload, one call (max_parallel=8)"), ("b", "8 x docker load -i, at once")
    base_mbps = runs.mbps(base)
    for key in (ours, base, ("b", "8 x docker load -i, one after the other")):
        (sec, sec_dev), (mbps, mbps_dev) = runs.seconds(key), runs.mbps(key)
        ratio = mbps / base_mbps[0]
        spread = ratio_spread(ratio, mbps, mbps_dev, *base_mbps)
        if key == ours:
            tail = f"{ratio:.2f} ± {spread:.2f} | >= {PARALLEL_TARGET:.1f}x | {verdict(ratio, PARALLEL_TARGET, spread)} |"
        elif key == base:
            tail = "1.00 (baseline) | - | - |"
        else:
            tail = f"{ratio:.2f} ± {spread:.2f} | (context) | - |"
        print(f"| {key[1]} | {sec:.2f} ± {sec_dev:.2f} | {mbps:.0f} ± {mbps_dev:.0f} | {runs.load(key)} | {tail}")
    per = [s["seconds"] for s in runs.rows[("b", "artiload per target")]]
    print(f"\nartiload per target (LoadOutcome.seconds, all runs): median {statistics.median(per):.2f} s, "
          f"{min(per):.2f}-{max(per):.2f} s")
    print(f"\n{VERDICT_RULE}\nload1 at start: the 1-minute load average as each run started, min-max over the row's runs.")


def report_raw(runs: Runs) -> None:
    print("\nRaw per-run numbers (seconds@load1 at start/steal: the share of all cores the hypervisor took):")
    for (part, what), samples in runs.rows.items():
        print(f"  ({part}) {what:45} " + "  ".join(f"{s['seconds']:.2f}s@{s['load1']:.2f}/{s['steal']:.0%}" for s in samples))


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="64M", help="the image's random layer (K/M/G suffixes; default 64M)")
    measure.add_common_args(parser)
    args = parser.parse_args(argv)
    if measure.as_worker(args, worker):
        return 0
    started, load_at_start = time.monotonic(), os.getloadavg()
    harness = bt.load_harness()
    print(f"starting a source engine and {WIDE} target engines ({args.engine_kind}) ...", file=sys.stderr, flush=True)
    rig = bt.start_rig(harness, targets=WIDE, sshd=False)
    runs = Runs()
    size = parse_size(args.size)
    try:
        harness.build_base_image(rig.source.socket_path)
        print(f"building a {size_label(size)} image ...", file=sys.stderr, flush=True)
        _tag, image_id, tar = bt.build_test_image(rig, size)
        nbytes = os.path.getsize(tar)
        for engine in rig.targets:
            bt.empty_target(rig, image_id, engine)
        with busy_processes(args.busy):
            print("measuring (a): a slow target among fast ones ...", file=sys.stderr, flush=True)
            measure_slow(rig, tar, image_id, args.repeat, runs)
            print(f"measuring (b): {WIDE} targets ...", file=sys.stderr, flush=True)
            measure_wide(rig, tar, image_id, args.repeat, runs)
        bt.machine_info(rig, load_at_start, args.busy)
    finally:
        rig.stop()
    print(f"{args.repeat} runs per row, order alternating between repeats\n")
    report(runs, size, nbytes)
    report_raw(runs)
    print(f"\n{' '.join(sys.argv)}: {time.monotonic() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
