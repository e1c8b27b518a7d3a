"""What every benchmark here measures, in one place: one transfer in a fresh process.

A worker runs in its own interpreter (``run_worker``) so that one transfer's
peak RSS cannot hide another's. Around the transfer alone, :class:`Meter`
records wall seconds, RSS growth (VmHWM after minus VmRSS before, with
VmHWM reset through ``/proc/self/clear_refs``), the CPU seconds of the
client (this process, or the CLI's processes for :func:`run_cli`) and how
busy the whole machine was: on 2 cores, a tool whose peer leaves the engine
a whole core is the one that wins, so the client's CPU is the reason a
ratio comes out as it does.

Also here, for every benchmark's table: the median absolute deviation
(:func:`mad`), the spread of a ratio of two medians (:func:`ratio_spread`),
the verdict rule (:func:`verdict`, :data:`VERDICT_RULE`) and ``--busy N``
(:func:`busy_processes`: CPU-bound processes beside every transfer).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

MiB = 1 << 20


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper()
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def size_label(size: int) -> str:
    return f"{size >> 30} GiB" if size % (1 << 30) == 0 else f"{size >> 20} MiB"


def stop_all(procs: tuple[Any, ...], work: str) -> None:
    """Stop every process that was started (a failure is reported, the others still stop), then remove ``work``."""
    for proc in procs:
        if proc is not None:
            try:
                proc.stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                print(f"warning: stopping {proc}: {exc}", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)


def load_script(name: str, path: Path) -> Any:
    """Import a file that is not in a package (scripts/harness.py) by path."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def proc_status_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def _machine_ticks() -> tuple[int, int, int]:
    """(all, idle, steal) jiffies of every core since boot, from /proc/stat.

    Steal is time the hypervisor gave this VM's cores to another guest:
    measured at 5-25% on these VMs at times, it slows whichever tool runs
    then, and no ratio of such runs says anything about the tools.
    """
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values), values[3] + values[4], values[7]  # idle + iowait; steal


class Meter:
    """``with Meter(children=...) as m:`` around one transfer; then ``m.result()``."""

    def __init__(self, *, children: bool = False) -> None:
        self.who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
        self.children = children

    def __enter__(self) -> Meter:
        if not self.children:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            self.rss_before = proc_status_kib("VmRSS")
        self.load1 = os.getloadavg()[0]  # the 1-minute load average as the run starts
        self.ticks = _machine_ticks()
        self.usage = resource.getrusage(self.who)
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
        after = resource.getrusage(self.who)
        self.cpu = (after.ru_utime - self.usage.ru_utime) + (after.ru_stime - self.usage.ru_stime)
        total, idle, steal = _machine_ticks()
        spent = total - self.ticks[0]
        self.busy = (spent - (idle - self.ticks[1])) / spent if spent else 0.0
        self.steal = (steal - self.ticks[2]) / spent if spent else 0.0
        self.peak = after.ru_maxrss if self.children else proc_status_kib("VmHWM")

    def result(self) -> dict[str, Any]:
        """seconds, peak_rss_kib, cpu_s, machine_busy (0..1 of all cores, steal included), steal (0..1 of all
        cores: taken by the hypervisor), load1 (1-minute load average at the start), and growth_kib for this
        process."""
        out = {"seconds": self.seconds, "peak_rss_kib": self.peak, "cpu_s": self.cpu, "machine_busy": self.busy,
               "steal": self.steal, "load1": self.load1}
        if not self.children:
            out.update(rss_before_kib=self.rss_before, growth_kib=self.peak - self.rss_before)
        return out


def run_cli(cmd: str | list[str], **kwargs: Any) -> dict[str, Any]:
    """Run the peer tool (a shell pipeline, or argv) to completion, measured like a transfer."""
    with Meter(children=True) as meter:
        subprocess.run(cmd, shell=isinstance(cmd, str), check=True, stdout=subprocess.DEVNULL, **kwargs)
    return meter.result()


def run_cli_parallel(cmds: Sequence[str | list[str]]) -> dict[str, Any]:
    """Start every command at once and wait for all: measured as one transfer (wall until the last ends)."""
    with Meter(children=True) as meter:
        procs = [subprocess.Popen(cmd, shell=isinstance(cmd, str), stdout=subprocess.DEVNULL) for cmd in cmds]
        codes = [proc.wait() for proc in procs]
    if any(codes):
        raise subprocess.CalledProcessError(max(codes), str(cmds[codes.index(max(codes))]))
    return meter.result()


ENGINE_KINDS = ("system", "28-classic", "28-containerd")


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """--repeat, --engine-kind, --busy and the hidden --worker, alike in every benchmark that measures transfers."""
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median reported)")
    parser.add_argument("--engine-kind", default=os.environ.get("ARTILOAD_TEST_ENGINE", "system"),
                        choices=ENGINE_KINDS, help="engine version and image store")
    parser.add_argument("--busy", type=int, default=0, metavar="N",
                        help="run N CPU-bound processes beside every transfer (a worker running other tasks)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)


def as_worker(args: argparse.Namespace, worker: Callable[[dict[str, Any]], dict[str, Any]]) -> bool:
    """Set the engine kind for the harness; with ``--worker JOB``, run ``worker(JOB)``, print its JSON, say True."""
    os.environ["ARTILOAD_TEST_ENGINE"] = args.engine_kind  # the harness starts engines of this kind
    if not args.worker:
        return False
    print(json.dumps(worker(json.loads(args.worker))))
    return True


def run_worker(script: str, job: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``script --worker JOB`` in a fresh interpreter; its last stdout line is the JSON result."""
    done = subprocess.run([sys.executable, script, "--worker", json.dumps(job)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        what = job.get("op") or job.get("tool")
        raise RuntimeError(f"worker {what} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- spread and verdicts

VERDICT_RULE = (
    "verdict: spread = ratio * (MAD_a/median_a + MAD_b/median_b) (both tools' relative MADs); "
    "'met' only if the margin beyond the target is wider than the spread "
    "(at least T: ratio - T > spread; at most T: T - ratio > spread), "
    "'NOT met' if the shortfall is wider than the spread, else 'within noise'. "
    "With fewer than 3 runs a tool's MAD says little: repeat more before trusting a verdict.")


def mad(values: Iterable[float]) -> float:
    """Median absolute deviation from the median (0 for one value)."""
    values = list(values)
    middle = statistics.median(values)
    return statistics.median(abs(v - middle) for v in values)


def median_mad(values: Iterable[float]) -> tuple[float, float]:
    values = list(values)
    return statistics.median(values), mad(values)


def ratio_spread(ratio: float, med_a: float, mad_a: float, med_b: float, mad_b: float) -> float:
    """How far ``ratio = med_a / med_b`` (or its inverse) may move by noise: ratio times both relative MADs."""
    rel = (mad_a / med_a if med_a else 0.0) + (mad_b / med_b if med_b else 0.0)
    return ratio * rel


def verdict(ratio: float, target: float, spread: float, *, at_most: bool = False) -> str:
    """'met', 'NOT met' or 'within noise' for ``ratio >= target`` (or ``<=`` with ``at_most``), per VERDICT_RULE."""
    margin = (target - ratio) if at_most else (ratio - target)
    if margin > spread:
        return "met"
    if -margin > spread:
        return "NOT met"
    return "within noise"


def load_range(values: Iterable[float]) -> str:
    """The 1-minute load averages at the start of a row's runs, as min-max."""
    values = list(values)
    low, high = min(values), max(values)
    return f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}-{high:.2f}"


# ---------------------------------------------------------------- --busy N

BUSY_CODE = "import hashlib\nh = hashlib.sha256()\nwhile True:\n    h.update(b'x' * 65536)\n"


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[list[subprocess.Popen]]:
    """``count`` CPU-bound processes (a sha256 loop each, in a process group of its own), for as long as the
    ``with`` lasts: a stand-in for a worker that runs other tasks. Killed on the way out, also on Ctrl-C, an
    exception or SIGTERM (turned into SystemExit while they run)."""
    procs: list[subprocess.Popen] = []
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    if count:
        signal.signal(signal.SIGTERM, on_term)
    try:
        for _ in range(count):
            procs.append(subprocess.Popen([sys.executable, "-c", BUSY_CODE], start_new_session=True,
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))
        yield procs
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in procs:
            proc.wait()
        if count:
            signal.signal(signal.SIGTERM, previous)
