"""On-demand benchmark: bytes that need not move, don't (issue #4).

An image of about ``--size`` (default 1 GiB) whose top layer (about 5%)
changed: ``base`` = busybox + 95% random bytes, ``app`` = base + 5% random.
In one run, medians of ``--repeat``:

- full load of ``app`` over SSH into an empty engine (artiload), against
  ``cat app.tar | ssh host docker load`` (OpenSSH);
- delta: the engine has ``base``; artiload sends only the new layer
  (bytes counted on the wire by the transport's counter);
- skip: the engine has ``app``; only the tag is applied;
- fan-out to two engines (one unix, one SSH) vs two sequential loads;
- engine to engine (CopyImage path, no tarball) vs ``docker save | docker load``.

Targets: delta sends at most 1.1x the changed layer's bytes and takes at most
0.3x the full load's time; skip under 1 s.

Run (as root, not in CI)::

    .venv/bin/python benchmarks/bench_delta.py --size 1G --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_transfer as bt  # noqa: E402 - the rig (engines, sshd, CLI helpers) is shared

MiB = 1 << 20


def hook_for(rig: bt.Rig, name: str, conn: dict) -> object:
    os.environ[f"AIRFLOW_CONN_{name.upper()}"] = json.dumps(conn)
    from airflow_provider_artiload.hooks.engine import DockerEngineHook

    return DockerEngineHook(name)


def empty(rig: bt.Rig, engine: object) -> None:
    ids = rig.cli(engine, "images", "-aq", "--no-trunc").split()
    if ids:
        rig.cli(engine, "rmi", "-f", *sorted(set(ids)))


class Table:
    """Rows of (scenario, bytes on the wire in the last run, median seconds), with the raw runs."""

    def __init__(self, repeat: int) -> None:
        self.repeat = repeat
        self.rows: list[tuple[str, int | None, float]] = []
        self.raw: dict[str, list[float]] = {}

    def measure(self, name: str, prepare: Callable[[], object], step: Callable[[], object], counter: object = None) -> float:
        runs, sent = [], None
        for _ in range(self.repeat):
            prepare()
            before = counter.sent if counter is not None else 0
            started = time.perf_counter()
            step()
            runs.append(time.perf_counter() - started)
            sent = counter.sent - before if counter is not None else None
        self.rows.append((name, sent, statistics.median(runs)))
        self.raw[name] = runs
        return statistics.median(runs)

    def sent(self, name: str) -> int:
        return next(row[1] for row in self.rows if row[0] == name) or 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1G")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--engine-kind", default=os.environ.get("ARTILOAD_TEST_ENGINE", "system"),
                        choices=("system", "28-classic", "28-containerd"), help="engine version and image store")
    args = parser.parse_args(argv)
    os.environ["ARTILOAD_TEST_ENGINE"] = args.engine_kind  # every engine the harness starts is of this kind
    print(f"engine kind: {args.engine_kind}")
    size = bt.parse_size(args.size)
    harness = bt.load_harness()
    rig = bt.start_rig(harness)
    os.environ.update(AIRFLOW_HOME=rig.env["AIRFLOW_HOME"], AIRFLOW__CORE__UNIT_TEST_MODE="True")
    second = harness.start_engine(os.path.join(rig.work, "dst2"), name="target2")
    try:
        run(rig, second, size, args.repeat)
    finally:
        second.stop()
        rig.stop()
    return 0


def run(rig: bt.Rig, second: object, size: int, repeat: int) -> None:
    import logging

    from airflow_provider_artiload import transfer
    from airflow_provider_artiload.oci.layout import read_layout
    from airflow_provider_artiload.hooks.paths import file_source

    log = logging.getLogger("bench")
    top = size // 20
    base_df = f"FROM {rig.harness.BASE_TAG}\nRUN head -c {size - top} /dev/urandom > /base.bin\n"
    rig.harness.build_base_image(rig.source.socket_path)
    rig.harness.build_image(rig.source.socket_path, "bench/base:1", base_df)
    rig.harness.build_image(rig.source.socket_path, "bench/app:2", f"FROM bench/base:1\nRUN head -c {top} /dev/urandom > /top.bin\n")
    source = hook_for(rig, "b_src", rig.unix_conn(rig.source))
    base = source.save_image("bench/base:1", os.path.join(rig.work, "base.tar"))
    app = source.save_image("bench/app:2", os.path.join(rig.work, "app.tar"))
    layout = read_layout(app.path)
    start, end = layout.extents[layout.layer_names[-1]]
    changed = end - start
    target_unix = hook_for(rig, "b_t_unix", rig.unix_conn(rig.target))
    target_ssh = hook_for(rig, "b_t_ssh", rig.ssh_conn(rig.target))
    second_ssh = hook_for(rig, "b_t2_ssh", rig.ssh_conn(second))
    full_opts = transfer.LoadOptions(skip_existing=False, delta=False)
    wire = target_ssh.client.dialer.counter
    table = Table(repeat)

    def nothing() -> None:
        pass

    def empty_target() -> None:
        empty(rig, rig.target)

    def empty_both() -> None:
        empty(rig, rig.target)
        empty(rig, second)

    def prime_base() -> None:
        empty(rig, rig.target)
        target_unix.load_archive(base, skip_existing=False)

    def load_into(hooks: list, artifact: object, options: object, log: logging.Logger) -> None:
        transfer.load(file_source(artifact), [hook.target for hook in hooks], options, log)

    def sequential() -> None:
        load_into([target_unix], app, full_opts, log)
        load_into([second_ssh], app, full_opts, log)

    pipe_cmd = f"cat {shlex.quote(app.path)} | " + shlex.join(
        rig.sshd.ssh_command() + [rig.docker, "-H", rig.target.unix_url, "load"]
    )
    save_load = f"{rig.docker} -H {rig.source.unix_url} save bench/app:2 | {rig.docker} -H {rig.target.unix_url} load"
    full = table.measure("full load over SSH (artiload)", empty_target, lambda: load_into([target_ssh], app, full_opts, log), wire)
    pipe = table.measure("OpenSSH: cat x.tar piped to ssh docker load", empty_target, lambda: subprocess.run(pipe_cmd, shell=True, check=True, capture_output=True))
    delta = table.measure("delta load over SSH (artiload)", prime_base, lambda: target_ssh.load_archive(app, tags=["bench/app:2"]), wire)
    skip = table.measure("skip (engine has the image)", nothing, lambda: target_ssh.load_archive(app, tags=["bench/app:again"]), wire)
    fan = table.measure("fan-out: 2 engines (unix + SSH)", empty_both, lambda: load_into([target_unix, second_ssh], app, full_opts, log))
    seq = table.measure("sequential: the same 2 loads", empty_both, sequential)
    e2e = table.measure("engine to engine (artiload, unix)", empty_target, lambda: transfer.load(source.source("bench/app:2"), [target_unix.target], full_opts, log))
    cli = table.measure("docker save piped to docker load", empty_target, lambda: subprocess.run(save_load, shell=True, check=True, capture_output=True))
    delta_sent = table.sent("delta load over SSH (artiload)")

    print(f"\nimage {app.size / MiB:.0f} MiB, changed top layer {changed / MiB:.1f} MiB ({changed} bytes); repeat {repeat}; {os.cpu_count()} cores\n")
    print("| scenario | bytes on the wire (artiload) | seconds (median) |")
    print("|---|---:|---:|")
    for name, sent, seconds in table.rows:
        print(f"| {name} | {'' if sent is None else f'{sent:,}'} | {seconds:.2f} |")
    checks = [
        ("delta bytes / changed layer bytes", delta_sent / changed, "<= 1.1"),
        ("delta time / full time (artiload, SSH)", delta / full, "<= 0.3"),
        ("skip seconds", skip, "< 1"),
        ("full SSH: OpenSSH pipe time / artiload time", pipe / full, ">= 1.2 (issue 2)"),
        ("fan-out time / sequential time", fan / seq, "< 1"),
        ("engine to engine: CLI pipe time / artiload time", cli / e2e, ">= 1"),
    ]
    print("\n| check | value | target |")
    print("|---|---:|---|")
    for name, value, target in checks:
        print(f"| {name} | {value:.2f} | {target} |")
    print("\nraw seconds:", json.dumps({k: [round(v, 2) for v in vs] for k, vs in table.raw.items()}))


if __name__ == "__main__":
    sys.exit(main())
