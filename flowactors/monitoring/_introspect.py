"""The one seam between monitoring and the runtime: a running job, read as plain data.

Everything the monitor shows comes from :class:`JobMonitor.snapshot`, which
reads the job's counters at that moment — nothing is recorded on the hot path.
This is the only module of :mod:`flowactors.monitoring` that touches runtime
internals (the plan, the tasks, the checkpoint coordinator); the rest works on
the frozen views below, so a change to the runtime changes this file only.

Three things the runtime does not keep are kept here:

- **Rates**: per job vertex, from the difference of two samples of the record
  counters (at least :data:`RATE_WINDOW_S` apart).
- **Checkpoint history**: the coordinator holds only the last completed
  checkpoint's statistics; the monitor samples them (on every read and every
  :data:`SAMPLE_INTERVAL_S` while :meth:`JobMonitor.start` runs) and keeps the
  last :data:`HISTORY` it saw, across restarts of the job.
- **Readiness**: a source subtask counts as running once it has taken a probe
  from its control lane — which a task does only after every operator of its
  chain opened (the source reader started, e.g. connected to its broker) and
  it entered its polling loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flowactors.api.environment import ScaleOutJobClient
from flowactors.checkpoint.coordinator import CheckpointCoordinator
from flowactors.runtime.context import Counter, Gauge
from flowactors.runtime.executor import JobExecution, JobStatus
from flowactors.runtime.graph import Plan
from flowactors.runtime.task import StreamTask
from flowactors.spi import ScaleOutStatistics
from flowactors.state.backend import HeapKeyedStateBackend
from flowactors.time import MIN_WATERMARK

if TYPE_CHECKING:
    from flowactors.api.environment import JobClient

#: Rates are computed over at least this many seconds of counter history.
RATE_WINDOW_S = 1.0
#: How often a started monitor samples checkpoint statistics.
SAMPLE_INTERVAL_S = 0.1
#: Completed checkpoints and savepoints kept in the history.
HISTORY = 50
#: Upper bounds (seconds) of the checkpoint duration histogram's buckets.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
#: User metrics the runtime registers itself; reported as built-in families instead.
BUILTIN_USER_METRICS = frozenset({"numKeyedStateEntries"})


@dataclass(frozen=True)
class OperatorView:
    name: str
    uid: str
    #: Unique within the job (``"map #2"`` for the second ``"map"``); the ``operator``
    #: label of the metrics.
    label: str


@dataclass(frozen=True)
class VertexView:
    """A job vertex: one chain of operators, run by ``parallelism`` subtasks."""

    id: int
    #: Unique within the job; the ``vertex`` label of the metrics.
    name: str
    operators: tuple[OperatorView, ...]
    parallelism: int
    is_source: bool
    is_sink: bool


@dataclass(frozen=True)
class EdgeView:
    source: int
    target: int
    partitioning: str


@dataclass(frozen=True)
class SubtaskView:
    vertex: int
    subtask: int
    records_in: int
    records_out: int
    backpressure_ratio: float
    #: The task's current input watermark (``None`` before the first one).
    watermark: int | None
    #: Keyed state entries over the chain's keyed operators (in memory; else ``None``).
    keyed_state_entries: int | None
    #: Bytes of keyed state in files and memtables (RocksDB only).
    keyed_state_bytes: int | None
    #: ``(uid, name) -> value`` of user counters and gauges.
    counters: dict[tuple[str, str], float] = field(default_factory=dict)
    gauges: dict[tuple[str, str], float] = field(default_factory=dict)
    #: A source subtask's lag per ``(topic, partition)``, as its reader reported it.
    consumer_lag: dict[tuple[str, int], int] = field(default_factory=dict)
    #: How long its reader's last commit of positions took.
    offset_commit_seconds: float | None = None
    #: ``(records in, records out)`` of each operator of the vertex, in its order.
    operator_records: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class CheckpointRecord:
    checkpoint_id: int
    kind: str  # "checkpoint" or "savepoint"
    completed_at: float  # wall clock, seconds
    duration_s: float
    sync_pause_s: float
    size_bytes: int
    written_bytes: int


@dataclass(frozen=True)
class JobSnapshot:
    job: str
    status: JobStatus
    restarts: int
    taken_at: float  # wall clock, seconds
    vertices: tuple[VertexView, ...]
    edges: tuple[EdgeView, ...]
    subtasks: tuple[SubtaskView, ...]
    in_flight_records: int
    #: Records per second per vertex id: ``(in, out)``.
    rates: dict[int, tuple[float, float]]
    checkpoints: tuple[CheckpointRecord, ...]
    checkpoints_completed: int
    #: Durations of completed checkpoints: cumulative counts per bucket of
    #: :data:`DURATION_BUCKETS` (then +Inf), and their sum in seconds.
    checkpoint_duration_buckets: tuple[int, ...]
    checkpoint_duration_sum_s: float
    #: Seconds since the last completed checkpoint (``None``: none yet).
    last_checkpoint_age_s: float | None
    ready: bool
    #: A scaled-out job's replica: what its worker reports (``None`` for a job in one
    #: process).
    scale_out: ScaleOutStatistics | None = None


class RateTracker:
    """Records per second per vertex, from counter samples at least
    :data:`RATE_WINDOW_S` apart."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, dict[int, tuple[int, int]]]] = deque()

    def rates(
        self, now: float, counts: dict[int, tuple[int, int]]
    ) -> dict[int, tuple[float, float]]:
        """``(in, out)`` per vertex of ``counts`` (records so far, sampled at ``now``)."""
        samples = self._samples
        samples.append((now, counts))
        while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW_S:
            samples.popleft()
        then, old = samples[0]
        dt = now - then
        rates: dict[int, tuple[float, float]] = {}
        for vertex, (n_in, n_out) in counts.items():
            o_in, o_out = old.get(vertex, (0, 0))
            if dt <= 0 or n_in < o_in or n_out < o_out:  # first sample, or a restart
                rates[vertex] = (0.0, 0.0)
            else:
                rates[vertex] = ((n_in - o_in) / dt, (n_out - o_out) / dt)
        return rates


class UniqueNames:
    """Names made unique in order of appearance: the second ``"map"`` is ``"map #2"``."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def __call__(self, name: str) -> str:
        self._seen[name] = self._seen.get(name, 0) + 1
        return name if self._seen[name] == 1 else f"{name} #{self._seen[name]}"


def vertices_of(plan: Plan) -> tuple[tuple[VertexView, ...], tuple[EdgeView, ...]]:
    """The plan's chains as vertices (with unique names) and the edges between them."""
    vertices: list[VertexView] = []
    vertex_name = UniqueNames()
    operator_name = UniqueNames()
    for index, chain in enumerate(plan.chains):
        vertices.append(
            VertexView(
                id=index,
                name=vertex_name(chain.name),
                operators=tuple(
                    OperatorView(t.name, plan.uids[t], operator_name(t.name)) for t in chain.members
                ),
                parallelism=chain.parallelism,
                is_source=chain.head.is_source,
                is_sink=chain.members[-1].is_sink,
            )
        )
    index_of = {id(chain): i for i, chain in enumerate(plan.chains)}
    edges = tuple(
        EdgeView(
            index_of[id(plan.chain_of[e.upstream])],
            index_of[id(plan.chain_of[e.downstream])],
            e.kind.value,
        )
        for e in plan.edges
        if not e.chained
    )
    return tuple(vertices), edges


def _keyed_state(task: StreamTask) -> tuple[int | None, int | None]:
    """``(entries, bytes)`` of the chain's keyed state; ``None`` where not known.

    In memory: exact entries, no bytes (measuring Python objects costs a walk).
    RocksDB: bytes of its files and memtables from its properties, no entries —
    its key estimate counts overwrites still in the memtable (30,000 for ten
    keys updated 3,000 times each) and an exact count is a scan of the database.
    """
    entries: int | None = None
    size: int | None = None
    for op in task.operators:
        backend = op.ctx.keyed_backend
        if backend is None:
            continue
        if isinstance(backend, HeapKeyedStateBackend):
            entries = (entries or 0) + backend.num_entries()
            continue
        db = getattr(backend, "db", None)
        if db is None or getattr(backend, "closed", False):
            continue
        files = db.property_int_value("rocksdb.total-sst-files-size") or 0
        memtables = db.property_int_value("rocksdb.cur-size-all-mem-tables") or 0
        size = (size or 0) + int(files) + int(memtables)
    return entries, size


def _user_metrics(
    task: StreamTask, uids: list[str]
) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], float]]:
    counters: dict[tuple[str, str], float] = {}
    gauges: dict[tuple[str, str], float] = {}
    for uid, op in zip(uids, task.operators):
        for name, metric in op.ctx.metric_group.metrics.items():
            if name in BUILTIN_USER_METRICS:
                continue
            if isinstance(metric, Counter):
                counters[(uid, name)] = float(metric.count)
            elif isinstance(metric, Gauge):
                try:
                    gauges[(uid, name)] = float(metric.get_value())
                except Exception:  # a gauge of something already closed
                    continue
    return counters, gauges


class JobMonitor:
    """Reads one job (a :class:`~flowactors.JobClient`) for the monitoring endpoints."""

    def __init__(self, client: JobClient) -> None:
        if isinstance(client, ScaleOutJobClient):
            raise TypeError(
                "JobMonitor reads a job that runs in one process; for any job, scaled-out "
                "replicas included, use flowactors.monitoring.monitor_for(client)"
            )
        self.client = client
        master = client._master
        self._plan: Plan = master.plan
        self.vertices, self.edges = vertices_of(self._plan)
        #: The uid of each chain's head -> its vertex.
        self._vertex_of_uid = {v.operators[0].uid: v.id for v in self.vertices}
        self._history: deque[CheckpointRecord] = deque(maxlen=HISTORY)
        self._completed = 0
        self._duration_counts = [0] * (len(DURATION_BUCKETS) + 1)
        self._duration_sum = 0.0
        self._seen_coordinator: CheckpointCoordinator | None = None
        self._seen_stats: object = None
        self._seen_completed = 0
        self._last_checkpoint_wall: float | None = None
        self._rates = RateTracker()
        self._probed: JobExecution | None = None
        self._sources_running: set[int] = set()
        self._sampler: asyncio.Task[None] | None = None
        self.is_ready()  # probe the sources now: the first readiness check may find them done

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Sample checkpoint statistics in the background (until :meth:`stop`)."""
        if self._sampler is None or self._sampler.done():
            self._sampler = asyncio.create_task(self._sample_loop(), name="flowactors-monitor")

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None

    async def _sample_loop(self) -> None:
        while True:
            self._sample_checkpoints()
            self.is_ready()  # after a restart, probe the new tasks
            await asyncio.sleep(SAMPLE_INTERVAL_S)

    # -- pieces ------------------------------------------------------------------

    @property
    def _execution(self) -> JobExecution | None:
        execution: JobExecution | None = self.client._master.execution
        return execution

    def _sample_checkpoints(self) -> None:
        execution = self._execution
        coordinator = None if execution is None else execution.coordinator
        if coordinator is None:
            return
        if coordinator is not self._seen_coordinator:  # a restart: a new coordinator
            self._seen_coordinator = coordinator
            self._seen_stats = None
            self._seen_completed = 0
        stats = coordinator.last_stats
        if stats is None or stats is self._seen_stats:
            return
        self._seen_stats = stats
        is_checkpoint = coordinator.completed > self._seen_completed
        self._seen_completed = coordinator.completed
        now = time.time()
        if is_checkpoint:
            self._completed += 1
            self._last_checkpoint_wall = now
            seconds = stats.duration_ms / 1000.0
            self._duration_sum += seconds
            bucket = next(
                (i for i, bound in enumerate(DURATION_BUCKETS) if seconds <= bound),
                len(DURATION_BUCKETS),
            )
            self._duration_counts[bucket] += 1
        self._history.append(
            CheckpointRecord(
                checkpoint_id=stats.checkpoint_id,
                kind="checkpoint" if is_checkpoint else "savepoint",
                completed_at=now,
                duration_s=stats.duration_ms / 1000.0,
                sync_pause_s=stats.max_sync_pause_ms / 1000.0,
                size_bytes=stats.size_bytes,
                written_bytes=stats.written_bytes,
            )
        )

    def _checkpoint_age(self) -> float | None:
        execution = self._execution
        coordinator = None if execution is None else execution.coordinator
        if coordinator is not None and coordinator.last_completed_at:
            return max(0.0, asyncio.get_running_loop().time() - coordinator.last_completed_at)
        if self._last_checkpoint_wall is None:
            return None
        return max(0.0, time.time() - self._last_checkpoint_wall)

    def _probe_sources(self, execution: JobExecution) -> bool:
        """True once every source subtask of ``execution`` has entered its loop (or
        finished its input), and none has failed or been cancelled."""
        if self._probed is not execution:
            self._probed = execution
            self._sources_running = set()
            for task in execution.tasks:
                if task.is_source:
                    task.post_control(self._probe(task))
        # A bounded source that read all its input and finished did start: it counts.
        sources = [t for t in execution.tasks if t.is_source]
        return bool(sources) and all(
            t.finished or (id(t) in self._sources_running and t.ended_at is None) for t in sources
        )

    def _probe(self, task: StreamTask) -> Any:
        async def probe() -> None:
            self._sources_running.add(id(task))

        return probe

    def is_ready(self) -> bool:
        """The job runs and every source subtask is reading (or read all it had)."""
        execution = self._execution
        if execution is None or self.client.status is not JobStatus.RUNNING:
            return False
        return self._probe_sources(execution)

    # -- the snapshot ------------------------------------------------------------

    def snapshot(self) -> JobSnapshot:
        """Everything the monitor shows, read now (on the job's event loop)."""
        self._sample_checkpoints()
        execution = self._execution
        subtasks: list[SubtaskView] = []
        in_flight = 0
        counts: dict[int, tuple[int, int]] = {v.id: (0, 0) for v in self.vertices}
        if execution is not None and execution.tasks:
            metrics = execution.metrics()
            in_flight = metrics.in_flight_records
            for task, m in zip(execution.tasks, metrics.tasks):
                vertex = self._vertex_of_uid.get(task.uids[0]) if task.uids else None
                if vertex is None:
                    continue
                # A source task has no input: its watermark is the one its chain emits.
                watermark = (
                    max(op.current_watermark for op in task.operators)
                    if task.is_source
                    else m.watermark
                )
                entries, size = _keyed_state(task)
                counters, gauges = _user_metrics(task, task.uids)
                subtasks.append(
                    SubtaskView(
                        vertex=vertex,
                        subtask=m.subtask,
                        records_in=m.records_in,
                        records_out=m.records_out,
                        backpressure_ratio=m.backpressure_ratio,
                        watermark=None if watermark <= MIN_WATERMARK else watermark,
                        keyed_state_entries=entries,
                        keyed_state_bytes=size,
                        counters=counters,
                        gauges=gauges,
                        consumer_lag=m.consumer_lag,
                        offset_commit_seconds=m.offset_commit_seconds,
                        operator_records=tuple(
                            (op.records_in, op.records_out) for op in m.operators
                        ),
                    )
                )
                c_in, c_out = counts[vertex]
                counts[vertex] = (c_in + m.records_in, c_out + m.records_out)
        now = time.time()
        return JobSnapshot(
            job=self.client.job_name,
            status=self.client.status,
            restarts=self.client.attempts,
            taken_at=now,
            vertices=self.vertices,
            edges=self.edges,
            subtasks=tuple(subtasks),
            in_flight_records=in_flight,
            rates=self._rates.rates(time.monotonic(), counts),
            checkpoints=tuple(self._history),
            checkpoints_completed=self._completed,
            checkpoint_duration_buckets=tuple(itertools.accumulate(self._duration_counts)),
            checkpoint_duration_sum_s=self._duration_sum,
            last_checkpoint_age_s=self._checkpoint_age(),
            ready=self.is_ready(),
        )
