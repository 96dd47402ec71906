"""A Prometheus collector that reads a job's counters when it is scraped.

Nothing is counted for Prometheus on the hot path: :class:`JobCollector`
turns one :meth:`JobMonitor.snapshot` into metric families per scrape. Labels
are ``job``, ``vertex`` (the job vertex: a chain of operators, named
``"A -> B"`` when chained, as in Flink's web UI; a scaled-out job's stage) and
``subtask`` (a scaled-out job's: the partition); what is counted per operator
(records in and out, user metrics) adds ``operator``, one operator of the
chain, and user metrics the operator's ``uid``; consumer lag adds ``topic`` and
``partition``. A scaled-out job's replica adds the ``flowactors_scale_out_*``
families (per task: ``stage`` and ``partition``). No label ever holds a record
key.

Durations are in seconds and sizes in bytes (Prometheus conventions); the
watermark is an event-time timestamp, so it keeps the library's unit:
``flowactors_watermark_ms``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from flowactors.monitoring._introspect import DURATION_BUCKETS, JobSnapshot
from flowactors.monitoring._scaleout import Monitor, ScaleOutMonitor
from flowactors.runtime.executor import JobStatus
from flowactors.spi import ScaleOutStatistics
from flowactors.time import MAX_WATERMARK

SUBTASK_LABELS = ["job", "vertex", "subtask"]
OPERATOR_LABELS = ["job", "vertex", "operator", "subtask"]
TASK_LABELS = ["job", "stage", "partition"]


def _user_name(name: str) -> str:
    return "flowactors_user_" + (re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "metric")


class JobCollector(Collector):
    """The metric families of one job, for any ``prometheus_client`` registry.

    >>> from prometheus_client import CollectorRegistry
    >>> registry = CollectorRegistry()
    >>> registry.register(JobCollector(monitor_for(client)))  # doctest: +SKIP
    """

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def describe(self) -> Iterator[Metric]:
        yield from self._families(None)

    def collect(self) -> Iterator[Metric]:
        yield from self._families(self.monitor.snapshot())

    def _families(self, snap: JobSnapshot | None) -> Iterator[Metric]:
        job_labels = ["job"]
        running = GaugeMetricFamily(
            "flowactors_job_running", "1 while the job runs, else 0", labels=job_labels
        )
        restarts = CounterMetricFamily(
            "flowactors_job_restarts", "Restarts of the job after failures", labels=job_labels
        )
        in_flight = GaugeMetricFamily(
            "flowactors_in_flight_records",
            "Records queued in mailboxes and output buffers",
            labels=job_labels,
        )
        records_in = CounterMetricFamily(
            "flowactors_records_in",
            "Records an operator took in (a chain's head: what its subtask took in; a "
            "source: records read)",
            labels=OPERATOR_LABELS,
        )
        records_out = CounterMetricFamily(
            "flowactors_records_out",
            "Records an operator emitted (main and side outputs; a sink: records written)",
            labels=OPERATOR_LABELS,
        )
        backpressure = GaugeMetricFamily(
            "flowactors_backpressure_ratio",
            "Share of its lifetime a subtask waited for room downstream (0 to 1)",
            labels=SUBTASK_LABELS,
        )
        watermark = GaugeMetricFamily(
            "flowactors_watermark_ms",
            "Current watermark of a subtask (its input; a source's output), epoch milliseconds",
            labels=SUBTASK_LABELS,
        )
        watermark_lag = GaugeMetricFamily(
            "flowactors_watermark_lag_seconds",
            "Wall clock minus a subtask's current watermark",
            labels=SUBTASK_LABELS,
        )
        state_labels = [*SUBTASK_LABELS]
        state_entries = GaugeMetricFamily(
            "flowactors_keyed_state_entries",
            "Keyed state entries of a subtask (state in memory)",
            labels=state_labels,
        )
        state_bytes = GaugeMetricFamily(
            "flowactors_keyed_state_bytes",
            "Bytes of RocksDB files and memtables of a subtask's keyed state",
            labels=state_labels,
        )
        completed = CounterMetricFamily(
            "flowactors_checkpoints_completed",
            "Checkpoints completed since monitoring started",
            labels=job_labels,
        )
        histogram = HistogramMetricFamily(
            "flowactors_checkpoint_duration_seconds",
            "Trigger to completion of checkpoints (savepoints excluded)",
            labels=job_labels,
        )
        duration = GaugeMetricFamily(
            "flowactors_last_checkpoint_duration_seconds",
            "Trigger to completion of the last completed checkpoint or savepoint",
            labels=job_labels,
        )
        size = GaugeMetricFamily(
            "flowactors_last_checkpoint_size_bytes",
            "Bytes of state the last completed checkpoint or savepoint refers to",
            labels=job_labels,
        )
        pause = GaugeMetricFamily(
            "flowactors_last_checkpoint_sync_pause_seconds",
            "Longest synchronous pause of a subtask in the last checkpoint or savepoint",
            labels=job_labels,
        )
        age = GaugeMetricFamily(
            "flowactors_last_checkpoint_age_seconds",
            "Seconds since the last checkpoint completed",
            labels=job_labels,
        )
        lag = GaugeMetricFamily(
            "flowactors_consumer_lag_records",
            "Records a source reader is behind the end of its partition",
            labels=[*SUBTASK_LABELS, "topic", "partition"],
        )
        commit = GaugeMetricFamily(
            "flowactors_offset_commit_seconds",
            "How long a source reader's last commit of its positions (to a consumer group) took",
            labels=SUBTASK_LABELS,
        )
        builtin = [
            running,
            restarts,
            in_flight,
            records_in,
            records_out,
            backpressure,
            watermark,
            watermark_lag,
            state_entries,
            state_bytes,
            completed,
            histogram,
            duration,
            size,
            pause,
            age,
            lag,
            commit,
        ]
        scale_out = _ScaleOutFamilies()
        replica = isinstance(self.monitor, ScaleOutMonitor)
        if replica:  # its tasks commit to Kafka: no checkpoints to report
            checkpoint_families = {
                id(f) for f in (completed, histogram, duration, size, pause, age)
            }
            builtin = [f for f in builtin if id(f) not in checkpoint_families]
        if snap is None:
            yield from builtin
            if replica:
                yield from scale_out.families()
            return

        job = snap.job
        running.add_metric([job], 1.0 if snap.status is JobStatus.RUNNING else 0.0)
        restarts.add_metric([job], snap.restarts)
        in_flight.add_metric([job], snap.in_flight_records)
        names = {v.id: v.name for v in snap.vertices}
        operators = {v.id: v.operators for v in snap.vertices}
        now_ms = time.time() * 1000.0
        user: dict[str, Metric] = {}
        for s in snap.subtasks:
            labels = [job, names[s.vertex], str(s.subtask)]
            label_of_uid = {op.uid: op.label for op in operators[s.vertex]}
            for op, (n_in, n_out) in zip(operators[s.vertex], s.operator_records):
                op_labels = [job, names[s.vertex], op.label, str(s.subtask)]
                records_in.add_metric(op_labels, n_in)
                records_out.add_metric(op_labels, n_out)
            backpressure.add_metric(labels, s.backpressure_ratio)
            if s.watermark is not None:
                watermark.add_metric(labels, s.watermark)
                if s.watermark < MAX_WATERMARK:
                    watermark_lag.add_metric(labels, max(0.0, now_ms - s.watermark) / 1000.0)
            if s.keyed_state_entries is not None:
                state_entries.add_metric(labels, s.keyed_state_entries)
            if s.keyed_state_bytes is not None:
                state_bytes.add_metric(labels, s.keyed_state_bytes)
            for metrics, counter in ((s.counters, True), (s.gauges, False)):
                for (uid, name), value in metrics.items():
                    family_name = _user_name(name)
                    family = user.get(family_name)
                    if family is None:
                        family = user[family_name] = (
                            CounterMetricFamily(
                                family_name,
                                f"User counter {name!r}",
                                labels=[*OPERATOR_LABELS, "uid"],
                            )
                            if counter
                            else GaugeMetricFamily(
                                family_name,
                                f"User gauge {name!r}",
                                labels=[*OPERATOR_LABELS, "uid"],
                            )
                        )
                    operator = label_of_uid.get(uid, uid)
                    family.add_metric(  # type: ignore[attr-defined]
                        [job, names[s.vertex], operator, str(s.subtask), uid], value
                    )
        completed.add_metric([job], snap.checkpoints_completed)
        bounds = [*(repr(b) for b in DURATION_BUCKETS), "+Inf"]
        histogram.add_metric(
            [job],
            list(zip(bounds, snap.checkpoint_duration_buckets)),
            snap.checkpoint_duration_sum_s,
        )
        if snap.checkpoints:
            last = snap.checkpoints[-1]
            duration.add_metric([job], last.duration_s)
            size.add_metric([job], last.size_bytes)
            pause.add_metric([job], last.sync_pause_s)
        if snap.last_checkpoint_age_s is not None:
            age.add_metric([job], snap.last_checkpoint_age_s)
        for s in snap.subtasks:
            for (topic, partition), value in s.consumer_lag.items():
                labels = [job, names[s.vertex], str(s.subtask), topic, str(partition)]
                lag.add_metric(labels, value)
            if s.offset_commit_seconds is not None:
                commit.add_metric([job, names[s.vertex], str(s.subtask)], s.offset_commit_seconds)
        if snap.scale_out is not None:
            scale_out.add(job, snap.scale_out)
        yield from builtin
        if replica:
            yield from scale_out.families()
        yield from user.values()


class _ScaleOutFamilies:
    """The families of a scaled-out job's replica: its worker's statistics."""

    def __init__(self) -> None:
        self.assigned = GaugeMetricFamily(
            "flowactors_scale_out_task_assigned",
            "1 for every task (stage, partition) this replica owns",
            labels=TASK_LABELS,
        )
        self.lag = GaugeMetricFamily(
            "flowactors_scale_out_task_lag_records",
            "Records a task has not taken yet, up to the end of its input partition",
            labels=TASK_LABELS,
        )
        self.tasks = GaugeMetricFamily(
            "flowactors_scale_out_tasks", "Tasks this replica owns", labels=["job"]
        )
        self.rebalances = CounterMetricFamily(
            "flowactors_scale_out_rebalances",
            "Rebalances of the group this replica took part in",
            labels=["job"],
        )
        self.last_rebalance = GaugeMetricFamily(
            "flowactors_scale_out_last_rebalance_seconds",
            "Revocation until every newly assigned task ran, in the last rebalance",
            labels=["job"],
        )
        self.restore = CounterMetricFamily(
            "flowactors_scale_out_restore_seconds",
            "Time spent restoring tasks' state from their changelogs",
            labels=["job"],
        )
        self.commits = CounterMetricFamily(
            "flowactors_scale_out_commits",
            "Transactions this replica's tasks committed",
            labels=["job"],
        )
        self.restores = CounterMetricFamily(
            "flowactors_scale_out_restores",
            "Tasks whose state this replica restored from their changelog",
            labels=["job"],
        )
        self.restores_cancelled = CounterMetricFamily(
            "flowactors_scale_out_restores_cancelled",
            "Restores a rebalance cancelled (the task moved on before it ran)",
            labels=["job"],
        )
        self.resumed = CounterMetricFamily(
            "flowactors_scale_out_resumed",
            "Revoked tasks given back to this replica and resumed with the state they kept",
            labels=["job"],
        )
        self.restoring = GaugeMetricFamily(
            "flowactors_scale_out_tasks_restoring",
            "Tasks assigned to this replica that are restoring their state (not running yet)",
            labels=["job"],
        )
        self.loop_stalls = CounterMetricFamily(
            "flowactors_scale_out_loop_stalls",
            "Times the event loop was blocked for half the group's session timeout or more",
            labels=["job"],
        )
        self.longest_loop_stall = GaugeMetricFamily(
            "flowactors_scale_out_longest_loop_stall_seconds",
            "The longest time the event loop came back late (heartbeats share the loop)",
            labels=["job"],
        )

    def add(self, job: str, stats: ScaleOutStatistics) -> None:
        for stage, partition in stats.assignment:
            self.assigned.add_metric([job, stage, str(partition)], 1.0)
        for (stage, partition), records in stats.lag.items():
            self.lag.add_metric([job, stage, str(partition)], records)
        self.tasks.add_metric([job], len(stats.assignment))
        self.rebalances.add_metric([job], stats.rebalances)
        self.last_rebalance.add_metric([job], stats.last_rebalance_seconds)
        self.restore.add_metric([job], stats.restore_seconds)
        self.commits.add_metric([job], stats.commits)
        self.restores.add_metric([job], stats.restores)
        self.restores_cancelled.add_metric([job], stats.restores_cancelled)
        self.resumed.add_metric([job], stats.resumed)
        self.restoring.add_metric([job], len(stats.restoring))
        self.loop_stalls.add_metric([job], stats.loop_stalls)
        self.longest_loop_stall.add_metric([job], stats.longest_loop_stall_seconds)

    def families(self) -> list[Metric]:
        return [
            self.assigned,
            self.lag,
            self.tasks,
            self.rebalances,
            self.last_rebalance,
            self.restore,
            self.commits,
            self.restores,
            self.restores_cancelled,
            self.resumed,
            self.restoring,
            self.loop_stalls,
            self.longest_loop_stall,
        ]
