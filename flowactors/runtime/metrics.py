"""What ``JobClient.metrics()`` reports: each task's counters, read when asked.

Nothing here runs per record: tasks and writers keep their counters anyway
(records in and out, time spent waiting for room downstream), and this module
reads them into frozen objects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from flowactors.runtime.context import ReaderMetrics
from flowactors.runtime.task import StreamTask

__all__ = ["JobMetrics", "TaskMetrics", "collect_metrics"]


@dataclass(frozen=True)
class TaskMetrics:
    """One chain subtask's counters at the moment metrics were taken."""

    name: str
    subtask: int
    records_in: int
    records_out: int
    #: Share of the task's lifetime spent waiting for room in a downstream mailbox.
    backpressure_ratio: float
    #: The task's event time (a source task's: the watermark its chain emitted).
    watermark: int
    #: Metrics of the chain's operators, each scoped ``"<operator>.<metric>"``.
    user_metrics: dict[str, float] = field(default_factory=dict)
    #: A source task's lag per ``(topic, partition)`` as its reader reported it.
    consumer_lag: dict[tuple[str, int], int] = field(default_factory=dict)
    #: How long the reader's last commit of positions to the external system took.
    offset_commit_seconds: float | None = None


@dataclass(frozen=True)
class JobMetrics:
    """A snapshot of a job's counters (``JobClient.metrics()``)."""

    #: Records queued in mailboxes plus records in output buffers.
    in_flight_records: int
    #: The most that mailboxes and output buffers can hold: ``in_flight_records`` never exceeds it.
    in_flight_capacity: int
    tasks: list[TaskMetrics]


_NONE = ReaderMetrics()


def collect_metrics(tasks: Sequence[StreamTask], batch_size: int) -> JobMetrics:
    """The counters of ``tasks`` now (``batch_size`` sizes the in-flight capacity)."""
    now = asyncio.get_event_loop().time()
    in_flight = 0
    capacity = 0
    taken: list[TaskMetrics] = []
    for task in tasks:
        mb = task.mailbox
        in_flight += mb.queued_records
        capacity += mb.num_channels * mb.capacity * batch_size
        for w in task.writers:
            in_flight += w.buffered_records
            capacity += 2 * batch_size * w.num_channels
        end = task.ended_at if task.ended_at is not None else now
        lifetime = max(end - task.started_at, 1e-9) if task.started_at else 1e-9
        user: dict[str, float] = {}
        for op in task.operators:
            for name, value in op.ctx.metric_group.values().items():
                user[f"{op.name}.{name}"] = value
        records_in = task.records_in or getattr(task.head, "records_out", 0)
        reader = getattr(task.head, "reader_metrics", _NONE)
        taken.append(
            TaskMetrics(
                name=task.name,
                subtask=task.subtask_index,
                records_in=records_in,
                records_out=task.records_out(),
                backpressure_ratio=min(1.0, task.backpressured_seconds() / lifetime),
                watermark=task.watermark,
                user_metrics=user,
                consumer_lag=dict(reader.lags),
                offset_commit_seconds=reader.last_commit_seconds,
            )
        )
    return JobMetrics(in_flight, capacity, taken)
