"""What every benchmark here measures, in one place: one transfer in a fresh process.

A worker runs in its own interpreter (``run_worker``) so that one transfer's
peak RSS cannot hide another's. Around the transfer alone, :class:`Meter`
records wall seconds, RSS growth (VmHWM after minus VmRSS before, with
VmHWM reset through ``/proc/self/clear_refs``), the CPU seconds of the
client (this process, or the CLI's processes for :func:`run_cli`) and how
busy the whole machine was: on 2 cores, a tool whose peer leaves the engine
a whole core is the one that wins, so the client's CPU is the reason a
ratio comes out as it does.
"""

from __future__ import annotations

import importlib.util
import json
import resource
import shutil
import subprocess
import sys
import time
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


def _machine_ticks() -> tuple[int, int]:
    """(all, idle) jiffies of every core since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values), values[3] + values[4]  # idle + iowait


class Meter:
    """``with Meter(children=...) as m:`` around one transfer; then ``m.result()``."""

    def __init__(self, *, children: bool = False) -> None:
        self.who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
        self.children = children

    def __enter__(self) -> Meter:
        if not self.children:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            self.rss_before = proc_status_kib("VmRSS")
        self.ticks = _machine_ticks()
        self.usage = resource.getrusage(self.who)
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
        after = resource.getrusage(self.who)
        self.cpu = (after.ru_utime - self.usage.ru_utime) + (after.ru_stime - self.usage.ru_stime)
        total, idle = _machine_ticks()
        spent = total - self.ticks[0]
        self.busy = (spent - (idle - self.ticks[1])) / spent if spent else 0.0
        self.peak = after.ru_maxrss if self.children else proc_status_kib("VmHWM")

    def result(self) -> dict[str, Any]:
        """seconds, peak_rss_kib, cpu_s, machine_busy (0..1 of all cores), and growth_kib for this process."""
        out = {"seconds": self.seconds, "peak_rss_kib": self.peak, "cpu_s": self.cpu, "machine_busy": self.busy}
        if not self.children:
            out.update(rss_before_kib=self.rss_before, growth_kib=self.peak - self.rss_before)
        return out


def run_cli(cmd: str | list[str], **kwargs: Any) -> dict[str, Any]:
    """Run the peer tool (a shell pipeline, or argv) to completion, measured like a transfer."""
    with Meter(children=True) as meter:
        subprocess.run(cmd, shell=isinstance(cmd, str), check=True, stdout=subprocess.DEVNULL, **kwargs)
    return meter.result()


def run_worker(script: str, job: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``script --worker JOB`` in a fresh interpreter; its last stdout line is the JSON result."""
    done = subprocess.run([sys.executable, script, "--worker", json.dumps(job)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        what = job.get("op") or job.get("tool")
        raise RuntimeError(f"worker {what} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
