"""Monitoring this replica's part of a scaled-out job, read through its client.

A replica of a scaled-out job (``env.enable_scale_out(...)``) runs some tasks,
each a (stage, partition) of the job, as the group assigned them. The monitor
shows them as the job vertices of a single-process job are shown: a stage is a
vertex (named by its uid), the partitions of it this replica runs are its
subtasks. Everything comes from the client's public ``metrics()`` (the tasks'
counters and the worker's :class:`~flowactors.spi.ScaleOutStatistics`), read
when asked; rates are kept here as :class:`JobMonitor` keeps them.

**Readiness** of a replica means it is a working member of the group: the job
runs, the replica joined the group (its first rebalance completed, which may
have given it no task), and every task it owns is open (producer fenced,
committed offset fetched, state restored) and running. A replica without
tasks is ready: it is standby capacity that takes tasks at the next rebalance,
and calling it unready would stall a rolling update of a service that has more
replicas than partitions. A later rebalance does not make a replica unready
(eager rebalances revoke every replica's tasks at once; readiness failing on
all of them together would take the whole service out of its load balancer);
it shows in ``flowactors_scale_out_rebalances_total`` and the last rebalance's
duration instead.
"""

from __future__ import annotations

import time

from flowactors.api.environment import JobClient, ScaleOutJobClient
from flowactors.monitoring._introspect import (
    BUILTIN_USER_METRICS,
    DURATION_BUCKETS,
    JobMonitor,
    JobSnapshot,
    OperatorView,
    RateTracker,
    SubtaskView,
    UniqueNames,
    VertexView,
)
from flowactors.runtime.executor import JobStatus
from flowactors.runtime.metrics import TaskMetrics
from flowactors.runtime.scaleout import ScaleOutMetrics
from flowactors.time import MIN_WATERMARK

#: The built-in user metric that counts a keyed operator's state entries.
_STATE_ENTRIES = "numKeyedStateEntries"


def _keyed_state_entries(task: TaskMetrics) -> int | None:
    entries = [op.gauges[_STATE_ENTRIES] for op in task.operators if _STATE_ENTRIES in op.gauges]
    return int(sum(entries)) if entries else None


def _user_metrics(
    task: TaskMetrics,
) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], float]]:
    """``(uid, name) -> value`` of the task's user counters and gauges."""
    counters: dict[tuple[str, str], float] = {}
    gauges: dict[tuple[str, str], float] = {}
    for op in task.operators:
        for kind, found in ((counters, op.counters), (gauges, op.gauges)):
            for name, value in found.items():
                if name not in BUILTIN_USER_METRICS:
                    kind[(op.uid, name)] = float(value)
    return counters, gauges


class ScaleOutMonitor:
    """Reads this replica's tasks of a scaled-out job (its :class:`ScaleOutJobClient`)."""

    def __init__(self, client: JobClient) -> None:
        self.client = client
        #: Stage uid -> vertex id, in order of first appearance (stable across reads).
        self._vertex_ids: dict[str, int] = {}
        self._rates = RateTracker()

    def start(self) -> None:
        """Nothing to sample in the background: every read takes what it shows."""

    async def stop(self) -> None:
        """Nothing runs in the background."""

    def _metrics(self) -> ScaleOutMetrics | None:
        metrics = self.client.metrics()
        return metrics if isinstance(metrics, ScaleOutMetrics) else None

    def _ready(self, metrics: ScaleOutMetrics | None) -> bool:
        if metrics is None or self.client.status is not JobStatus.RUNNING:
            return False
        stats = metrics.scale_out
        # A rebalance is counted when it begins and its duration known when it ended:
        # no duration yet means the first one (joining the group) still runs.
        if stats is None or stats.rebalances == 0 or stats.last_rebalance_seconds <= 0:
            return False
        return set(stats.assignment) <= set(metrics.task_ids)

    def is_ready(self) -> bool:
        """The replica joined the group and every task it owns is open and running."""
        return self._ready(self._metrics())

    def snapshot(self) -> JobSnapshot:
        metrics = self._metrics()
        tasks: list[tuple[str, int, TaskMetrics]] = (
            []
            if metrics is None
            else sorted(
                (
                    (stage, partition, m)
                    for (stage, partition), m in zip(metrics.task_ids, metrics.tasks)
                ),
                key=lambda task: (task[0], task[1]),
            )
        )
        by_stage: dict[str, list[tuple[int, TaskMetrics]]] = {}
        for stage, partition, m in tasks:
            self._vertex_ids.setdefault(stage, len(self._vertex_ids))
            by_stage.setdefault(stage, []).append((partition, m))
        operator_label = UniqueNames()
        vertices: list[VertexView] = []
        subtasks: list[SubtaskView] = []
        counts: dict[int, tuple[int, int]] = {}
        for stage in sorted(by_stage, key=self._vertex_ids.__getitem__):
            vertex = self._vertex_ids[stage]
            owned = by_stage[stage]
            first = owned[0][1]
            vertices.append(
                VertexView(
                    id=vertex,
                    name=stage,
                    operators=tuple(
                        OperatorView(op.name, op.uid, operator_label(op.name))
                        for op in first.operators
                    ),
                    parallelism=len(owned),
                    is_source=False,  # every task reads a topic: show its input rate
                    is_sink=True,  # and ends in sinks (hops to other stages, user sinks)
                )
            )
            for partition, m in owned:
                counters, gauges = _user_metrics(m)
                subtasks.append(
                    SubtaskView(
                        vertex=vertex,
                        subtask=partition,
                        records_in=m.records_in,
                        records_out=m.records_out,
                        backpressure_ratio=m.backpressure_ratio,
                        watermark=None if m.watermark <= MIN_WATERMARK else m.watermark,
                        keyed_state_entries=_keyed_state_entries(m),
                        keyed_state_bytes=None,
                        counters=counters,
                        gauges=gauges,
                        consumer_lag=m.consumer_lag,
                        offset_commit_seconds=m.offset_commit_seconds,
                        operator_records=tuple(
                            (op.records_in, op.records_out) for op in m.operators
                        ),
                    )
                )
                c_in, c_out = counts.get(vertex, (0, 0))
                counts[vertex] = (c_in + m.records_in, c_out + m.records_out)
        return JobSnapshot(
            job=self.client.job_name,
            status=self.client.status,
            restarts=self.client.attempts,
            taken_at=time.time(),
            vertices=tuple(vertices),
            edges=(),
            subtasks=tuple(subtasks),
            in_flight_records=0 if metrics is None else metrics.in_flight_records,
            rates=self._rates.rates(time.monotonic(), counts),
            checkpoints=(),
            checkpoints_completed=0,
            checkpoint_duration_buckets=(0,) * (len(DURATION_BUCKETS) + 1),
            checkpoint_duration_sum_s=0.0,
            last_checkpoint_age_s=None,
            ready=self._ready(metrics),
            scale_out=None if metrics is None else metrics.scale_out,
        )


def monitor_for(client: JobClient) -> JobMonitor | ScaleOutMonitor:
    """The monitor of ``client``'s job: the whole job, or a scaled-out job's replica."""
    return ScaleOutMonitor(client) if isinstance(client, ScaleOutJobClient) else JobMonitor(client)


#: What the endpoints and the collector read: a job in one process, or a replica.
Monitor = JobMonitor | ScaleOutMonitor
