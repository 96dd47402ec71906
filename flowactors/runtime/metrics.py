"""What ``JobClient.metrics()`` reports: each task's counters, read when asked.

Nothing here runs per record: tasks, writers and operator outputs keep their
counters anyway (records in and out, once per batch; time spent waiting for
room downstream), and this module reads them into frozen objects.

Records are counted per chain subtask (:class:`TaskMetrics`, Flink's job
vertex) and per operator inside the chain (:class:`OperatorMetrics`): an
operator's records out are what passed through its outputs (main and side),
a chained operator's records in are what its upstream outputs passed to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from flowactors.runtime.context import Counter, ReaderMetrics
from flowactors.runtime.operators import Output, StreamOperator
from flowactors.runtime.task import StreamTask

__all__ = ["JobMetrics", "OperatorMetrics", "TaskMetrics", "collect_metrics"]


@dataclass(frozen=True)
class OperatorMetrics:
    """One operator of a chain subtask: its records in and out (Flink's
    ``numRecordsIn``/``numRecordsOut`` of an operator)."""

    name: str
    uid: str
    #: The head: what the task took in (a source: records read); a chained operator:
    #: what the operators before it emitted to it.
    records_in: int
    #: Records emitted to its main and side outputs; a sink: records it wrote.
    records_out: int
    #: Its user metrics (``ctx.get_metric_group()``): counters, and gauges read now.
    counters: dict[str, float] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)


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
    #: Records in and out of each operator of the chain, head first.
    operators: tuple[OperatorMetrics, ...] = ()


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
        records_in = task.records_in or getattr(task.head, "records_out", 0)
        operators = operator_metrics(task, records_in)
        user: dict[str, float] = {}
        for op in operators:
            for name, value in (*op.counters.items(), *op.gauges.items()):
                user[f"{op.name}.{name}"] = value
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
                operators=operators,
            )
        )
    return JobMetrics(in_flight, capacity, taken)


def _outputs(op: StreamOperator) -> list[Output]:
    return [op.output, *op.side_outputs.values()]


def operator_metrics(task: StreamTask, head_records_in: int) -> tuple[OperatorMetrics, ...]:
    """Records in and out of every operator of ``task``'s chain, read from the
    counts of their outputs (an operator between two chain members that is not
    one itself, such as the key selector check of a chained ``key_by``, passes
    its count on)."""
    members = {id(op) for op in task.operators}
    received: dict[int, int] = {}
    pending = [out for op in task.operators for out in _outputs(op)]
    while pending:
        out = pending.pop()
        for target in out.operators:
            if id(target) in members:
                received[id(target)] = received.get(id(target), 0) + out.records
            else:
                pending.extend(_outputs(target))
    taken: list[OperatorMetrics] = []
    for index, op in enumerate(task.operators):
        written = getattr(op, "records_written", None)
        records_out = written if written is not None else sum(out.records for out in _outputs(op))
        counters, gauges = _user_metrics(op)
        taken.append(
            OperatorMetrics(
                name=op.name,
                uid=task.uids[index] if index < len(task.uids) else op.name,
                records_in=head_records_in if index == 0 else received.get(id(op), 0),
                records_out=records_out,
                counters=counters,
                gauges=gauges,
            )
        )
    return tuple(taken)


def _user_metrics(op: StreamOperator) -> tuple[dict[str, float], dict[str, float]]:
    counters: dict[str, float] = {}
    gauges: dict[str, float] = {}
    for name, metric in op.ctx.metric_group.metrics.items():
        if isinstance(metric, Counter):
            counters[name] = metric.count
            continue
        try:
            gauges[name] = metric.get_value()
        except Exception:  # a gauge of something already closed: not worth a failure
            continue
    return counters, gauges
