"""Every target of a load is asked for its plan at once: a fleet's planning costs one round trip, not N."""

from __future__ import annotations

import logging
import threading

from airflow_provider_artiload.exceptions import EngineError
from airflow_provider_artiload.transfer.load import _plan_all
from airflow_provider_artiload.transfer.plan import LoadOptions, Unreachable
from airflow_provider_artiload.transfer.sources import SourceInfo

LOG = logging.getLogger("test")


class Planner:
    """A target whose plan waits until every other target is planning too (a barrier, not a clock)."""

    def __init__(self, name: str, barrier: threading.Barrier) -> None:
        self.url = name
        self.barrier = barrier

    def plan(self, info, options, log):
        self.barrier.wait(timeout=10)  # raises BrokenBarrierError if the plans ran one after another
        return Unreachable(self, EngineError(f"{self.url}: planned"))


def test_plans_are_asked_of_every_target_at_once_and_kept_in_order():
    barrier = threading.Barrier(8)
    targets = [Planner(f"engine-{i}", barrier) for i in range(8)]
    plans = _plan_all(targets, SourceInfo(label="x.tar"), LoadOptions(()), LOG)
    assert [str(p.error) for p in plans] == [f"engine-{i}: planned" for i in range(8)]


def test_one_target_is_planned_in_the_callers_thread():
    seen = []

    class Here:
        url = "engine"

        def plan(self, info, options, log):
            seen.append(threading.current_thread())
            return Unreachable(self, EngineError("x"))

    _plan_all([Here()], SourceInfo(label="x.tar"), LoadOptions(()), LOG)
    assert seen == [threading.current_thread()]
