"""The readiness rule of a scaled-out job's replica, case by case.

``ScaleOutMonitor`` reads only ``client.metrics()`` and ``client.status``; here a
replica's client is stood in for by one that answers with the statistics of each
case (the whole path against the real broker is in tests/kafka/test_scaleout_monitoring.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from flowactors.monitoring import ScaleOutMonitor
from flowactors.runtime.executor import JobStatus
from flowactors.runtime.metrics import TaskMetrics
from flowactors.runtime.scaleout import ScaleOutMetrics
from flowactors.spi import ScaleOutStatistics


@dataclass
class Replica:
    """A replica's client as the monitor sees it: status and metrics."""

    stats: ScaleOutStatistics
    running: tuple[tuple[str, int], ...]
    status: JobStatus = JobStatus.RUNNING
    job_name: str = "job"
    attempts: int = 0

    def metrics(self) -> ScaleOutMetrics:
        tasks = [TaskMetrics(f"{stage}#{p}", 0, 0, 0, 0.0, 0) for stage, p in self.running]
        return ScaleOutMetrics(0, 0, tasks, self.stats, self.running)


def stats(
    assignment: tuple[tuple[str, int], ...], rebalances: int, last_rebalance_seconds: float
) -> ScaleOutStatistics:
    return ScaleOutStatistics(assignment, rebalances, last_rebalance_seconds, 0.0, 0)


TWO = (("in-0", 0), ("sum", 1))


@pytest.mark.parametrize(
    ("case", "replica", "ready"),
    [
        ("not in the group yet", Replica(stats((), 0, 0.0), ()), False),
        ("its first rebalance still runs", Replica(stats((), 1, 0.0), ()), False),
        ("joined, every task it owns runs", Replica(stats(TWO, 1, 0.4), TWO), True),
        ("joined without a task: standby", Replica(stats((), 1, 0.4), ()), True),
        ("a task it owns does not run", Replica(stats(TWO, 1, 0.4), TWO[:1]), False),
        ("a later rebalance runs", Replica(stats((), 2, 0.4), ()), True),
        ("stopped", Replica(stats(TWO, 1, 0.4), TWO, JobStatus.FINISHED), False),
        ("failed", Replica(stats(TWO, 1, 0.4), TWO, JobStatus.FAILED), False),
    ],
)
def test_readiness(case: str, replica: Replica, ready: bool) -> None:
    monitor = ScaleOutMonitor(replica)  # type: ignore[arg-type]
    assert monitor.is_ready() is ready, case
    assert monitor.snapshot().ready is ready, case


def test_the_snapshot_has_a_vertex_per_stage_and_a_subtask_per_partition() -> None:
    three = (*TWO, ("sum", 3))
    replica = Replica(stats(three, 1, 0.4), three)
    snap = ScaleOutMonitor(replica).snapshot()  # type: ignore[arg-type]
    assert [(v.name, v.parallelism) for v in snap.vertices] == [("in-0", 1), ("sum", 2)]
    names = {v.id: v.name for v in snap.vertices}
    assert sorted((names[s.vertex], s.subtask) for s in snap.subtasks) == [
        ("in-0", 0),
        ("sum", 1),
        ("sum", 3),
    ]
    assert snap.scale_out is replica.stats
