"""The interfaces a source or sink implements: the only seam connectors use.

A :class:`Source` creates one :class:`SourceReader` per parallel subtask. The
runtime calls ``poll_next(output)`` in a loop; a reader hands records to
``output.collect_batch`` in batches (a list of values and, optionally, their
event timestamps in a parallel list) and says whether more is available now,
later (then the runtime awaits ``is_available()``), or never.

A :class:`Sink` creates one :class:`SinkWriter` per subtask, which receives
whole batches and is flushed at the end of input.

Example (a source that counts to ``n`` on one subtask)::

    class CountSource(Source[int]):
        max_parallelism = 1
        def __init__(self, n): self.n = n
        def create_reader(self, context): return CountReader(self.n)

    class CountReader(SourceReader[int]):
        def __init__(self, n): self.i, self.n = 0, n
        async def poll_next(self, output):
            batch = list(range(self.i, min(self.i + 100, self.n)))
            self.i += len(batch)
            await output.collect_batch(batch)
            return InputStatus.MORE_AVAILABLE if self.i < self.n else InputStatus.END_OF_INPUT
"""

from __future__ import annotations

import asyncio
import enum
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")


class InputStatus(enum.Enum):
    """What ``SourceReader.poll_next`` tells the runtime."""

    MORE_AVAILABLE = "more"  #: call poll_next again right away
    NOTHING_AVAILABLE = "nothing"  #: await is_available() first
    END_OF_INPUT = "end"  #: this reader is done


class Boundedness(enum.Enum):
    BOUNDED = "bounded"
    CONTINUOUS_UNBOUNDED = "unbounded"


class SourceMetrics(Protocol):
    """Where a reader reports how far behind it is; the runtime exports it (per split:
    ``flowactors_consumer_lag_records``, and in ``JobClient.metrics()``)."""

    def report_lag(self, topic: str, partition: int, lag: int) -> None:
        """The reader is ``lag`` records behind the end of ``topic``/``partition``."""
        ...

    def forget_lag(self, topic: str, partition: int) -> None:
        """The reader no longer reads ``topic``/``partition``."""
        ...

    def report_commit(self, seconds: float) -> None:
        """Committing positions to the external system took ``seconds``."""
        ...


class _NoSourceMetrics:
    def report_lag(self, topic: str, partition: int, lag: int) -> None:
        pass

    def forget_lag(self, topic: str, partition: int) -> None:
        pass

    def report_commit(self, seconds: float) -> None:
        pass


@dataclass(frozen=True)
class SourceReaderContext:
    """Where a reader runs, and the state it resumes from.

    ``restored_state`` is ``None`` on a fresh start; after a restore it is this
    subtask's share of the entries the readers returned from
    ``snapshot_state`` (exactly its own at unchanged parallelism; spread
    round-robin over the subtasks after a rescale). ``restored_union_state``
    is every old subtask's entries, for readers that must decide themselves
    which of them they own now (Flink's union list state; the Kafka source
    finds its partitions this way).
    """

    job_name: str
    source_name: str
    subtask_index: int
    parallelism: int
    batch_size: int
    restored_state: list[Any] | None = None
    restored_union_state: list[Any] | None = None
    #: Where the reader reports its lag (and commit latency).
    metrics: SourceMetrics = field(default_factory=_NoSourceMetrics)


@dataclass(frozen=True)
class SinkWriterContext:
    """Where a sink writer runs, and the state it resumes from.

    After a restore, ``restored_state`` is this subtask's share of what the
    writers returned from ``snapshot_state`` and ``restored_union_state`` is
    every subtask's entries (for committing or cleaning up what any subtask
    left behind).
    """

    job_name: str
    sink_name: str
    subtask_index: int
    parallelism: int
    restored_state: list[Any] | None = None
    restored_union_state: list[Any] | None = None
    #: Counts restarts of the job within this process (0 on the first run).
    attempt: int = 0
    #: Unique per run of the job (new after every restart and every process start).
    run_id: str = ""
    #: Whether the job takes checkpoints (exactly-once sinks commit on completion).
    checkpointing: bool = False
    #: The highest parallelism any run of this job gave this sink, this run included (known
    #: across process restarts when the job checkpoints): subtasks ``0..highest - 1`` may
    #: have left external resources (open transactions) that a new run must clean up.
    highest_parallelism: int = 1


class ReaderOutput(Protocol[T]):
    """What a reader emits into."""

    async def collect_batch(
        self,
        values: list[T],
        timestamps: list[int | None] | None = None,
        split_id: Any = None,
    ) -> None:
        """Emit records of one split (``split_id``: e.g. a partition). Watermarks are
        generated per split and combined by minimum."""
        ...

    async def collect_input_batch(
        self, input_index: int, values: list[T], timestamps: list[int | None] | None = None
    ) -> None:
        """Emit records of input ``input_index`` (0 or 1) of the operator the reader
        feeds: a scale-out task reading an internal topic that carries both inputs of a
        two-input operator (``connect``, ``interval_join``). Other readers emit through
        :meth:`collect_batch`, which is input 0."""
        ...

    def emit_side_output(self, tag: Any, value: Any) -> None:
        """Send a value (e.g. a malformed record) to a side output of the source."""

    async def emit_watermark(self, timestamp: int) -> None:
        """Advance event time to ``timestamp`` (for readers whose source is used without a
        watermark strategy and knows event time itself, e.g. from upstream markers);
        a watermark not above the last one is ignored. With a watermark strategy it is a
        floor: the generated watermarks go on above it (a reader resuming where an earlier
        reader of the split left event time)."""


class SourceReader(ABC, Generic[T]):
    """Reads one subtask's share of a source."""

    async def start(self) -> None:
        """Open connections or files; called once before the first ``poll_next``."""

    @abstractmethod
    async def poll_next(self, output: ReaderOutput[T]) -> InputStatus:
        """Emit what is available now (ideally one batch) and say what follows."""

    async def is_available(self) -> None:
        """Wait until ``poll_next`` may have something (after ``NOTHING_AVAILABLE``)."""
        await asyncio.sleep(0.001)

    async def close(self) -> None:
        """Release resources; called once, also after failure or cancellation."""

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        """The reader's position (e.g. offsets per split), as entries that can be
        spread over subtasks on rescale. Called between two ``poll_next`` calls."""
        return []

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """The checkpoint is complete (e.g. commit offsets to an external system)."""


class Source(ABC, Generic[T]):
    """A description of where records come from; creates the readers."""

    #: Sources that cannot be read in parallel set this to 1.
    max_parallelism: int | None = None
    boundedness: Boundedness = Boundedness.BOUNDED

    @abstractmethod
    def create_reader(self, context: SourceReaderContext) -> SourceReader[T]: ...


class SinkWriter(ABC, Generic[T]):
    """Writes one subtask's records."""

    async def open(self) -> None:
        """Called once before the first ``write``."""

    @abstractmethod
    async def write(self, values: list[T], timestamps: list[int | None] | None) -> None:
        """Write a batch of records."""

    async def flush(self, end_of_input: bool) -> None:
        """Make written records durable/visible; ``end_of_input`` on the final call."""

    async def write_watermark(self, timestamp: int) -> None:
        """Event time reached ``timestamp`` at this sink (Flink's ``writeWatermark``)."""

    async def write_watermark_status(self, idle: bool) -> None:
        """Every input of this sink became idle (``True``) or active again (``False``)."""

    async def close(self) -> None:
        """Release resources; called once, also after failure or cancellation."""

    async def prepare_commit(self, checkpoint_id: int) -> None:
        """Before the barrier passes: flush, and close what checkpoint ``checkpoint_id`` covers."""

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        """What a restore needs (e.g. files or transactions awaiting their commit)."""
        return []

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` is complete: commit what it covers."""

    async def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` will not complete."""


class Sink(ABC, Generic[T]):
    """A description of where records go; creates the writers."""

    #: Sinks that must run as one subtask set this to 1.
    max_parallelism: int | None = None
    #: Output becomes final only when a checkpoint completes (a two-phase commit through
    #: ``prepare_commit`` / ``notify_checkpoint_complete``). A scaled-out job takes no
    #: checkpoints (its tasks commit Kafka transactions), so such a sink cannot run in one
    #: unless its scale-out backend wraps it into its commits.
    commits_on_checkpoints: bool = False

    @abstractmethod
    def create_writer(self, context: SinkWriterContext) -> SinkWriter[T]: ...


# -- scale-out ------------------------------------------------------------------------
#
# ``env.enable_scale_out(...)`` runs a job on every replica of a service. The core cuts
# the job into stages (:mod:`flowactors.runtime.stages`) and runs each task (stage,
# partition) with its own runtime; a *backend* does the rest: group membership, the
# input of each task, its outputs and its commits. The core finds the backend through
# the packaging entry point group ``flowactors.scale_out`` (flowactors-kafka registers
# one), so it never imports a connector.

#: The entry point group scale-out backends register under.
SCALE_OUT_ENTRY_POINTS = "flowactors.scale_out"
#: The header of a record in an internal topic that is for input ``int(value)`` of a
#: two-input operator; records of input 0 have none.
INPUT_INDEX_HEADER = "flowactors.input"


@dataclass(frozen=True)
class ScaleOutSettings:
    """What ``env.enable_scale_out`` was given, plus the commit interval."""

    bootstrap_servers: str
    #: Consumer group, prefix of internal topics and of transactional ids.
    application_id: str
    #: Static group membership id (e.g. the pod name); ``None``: dynamic membership.
    instance_id: str | None = None
    #: Client properties of the backend's internal clients (TLS, SASL, ...).
    properties: Mapping[str, Any] = field(default_factory=dict)
    #: How often every task commits its outputs and input offsets (the checkpoint interval).
    commit_interval_ms: int = 200
    max_parallelism: int = 128


@dataclass(frozen=True)
class HopSpec:
    """Records a task sends to an internal topic, for one input of the stage reading it."""

    topic: str
    input_index: int
    #: A fresh router per task: a batch of records -> their partitions of ``topic``.
    make_router: Callable[[], Callable[[list[Any]], list[int]]]


@dataclass(frozen=True)
class StageSpec:
    """One stage as a backend sees it: what it reads and writes, how many tasks it has."""

    uid: str
    #: The user's source heading the stage; ``None`` when it reads ``input_topic``.
    source: Source[Any] | None
    input_topic: str | None
    #: Partitions of ``input_topic`` (``None`` for a source stage: its topics decide).
    partitions: int | None
    outputs: tuple[HopSpec, ...]
    #: The compacted topic of the stage's keyed state (``None``: the stage keeps none).
    changelog_topic: str | None = None
    #: The stages that write into ``input_topic`` (their tasks send watermark markers).
    upstream_stages: tuple[str, ...] = ()
    #: How many inputs the stage's head reads from ``input_topic``: 2 for a two-input
    #: operator, whose records carry the input-index header (absent for input 0); a
    #: reader hands them on with :meth:`ReaderOutput.collect_input_batch`.
    inputs: int = 1


@dataclass(frozen=True)
class TaskPorts:
    """What a backend hands the core for one task: its input and its outputs.

    ``source`` yields the records of the task's input partition and, as a reader,
    is polled by the task between batches: the one moment the whole task is
    quiet, so the backend commits there. ``hop_sink`` writes into an internal
    topic; ``wrap_sink`` turns a user sink into one that writes within the
    task's commits (a backend returns other sinks unchanged).
    """

    source: Source[Any]
    hop_sink: Callable[[HopSpec], Sink[Any]]
    wrap_sink: Callable[[Sink[Any]], Sink[Any]]
    #: The values of the task's changelog partition, latest per key, tombstones dropped.
    restored_state: Sequence[bytes] = ()


class StageTask(Protocol):
    """A running task, as the core hands it to the backend."""

    async def wait(self) -> None:
        """Until the task ends; raises what made it fail."""

    async def cancel(self) -> None:
        """Stop the task and wait until it has."""

    def state_changes(self) -> list[tuple[bytes, bytes | None]]:
        """Keyed state written since the last call, as changelog (key, value) records
        (``None``: deleted). Called while the task is quiet (from its source reader)."""


@dataclass(frozen=True)
class ScaleOutJob:
    """A job cut into stages, and how to start one of its tasks."""

    job_name: str
    stages: tuple[StageSpec, ...]
    #: Internal topics and their partition counts.
    internal_topics: Mapping[str, int]
    start_task: Callable[[str, int, TaskPorts], Awaitable[StageTask]]


@dataclass(frozen=True)
class ScaleOutStatistics:
    """What a worker reports about its share of a scaled-out job."""

    #: The tasks it owns: (stage uid, partition).
    assignment: tuple[tuple[str, int], ...]
    #: Rebalances it took part in, and how long the last one took (revocation until
    #: every newly assigned task ran).
    rebalances: int
    last_rebalance_seconds: float
    #: Time spent restoring tasks' state from changelogs, in all (cancelled restores too).
    restore_seconds: float
    #: Transactions its tasks committed.
    commits: int
    #: Per task: records it has not taken yet, up to the end of its input partition (the
    #: last stable offset; transaction markers count as records), when known.
    lag: Mapping[tuple[str, int], int] = field(default_factory=dict)
    #: Times the event loop was blocked for half the group's session timeout or more
    #: (heartbeats share the loop: past the timeout the worker loses its tasks), and the
    #: longest time the loop came back late, in seconds.
    loop_stalls: int = 0
    longest_loop_stall_seconds: float = 0.0
    #: Tasks whose state it restored from their changelog, restores a rebalance
    #: cancelled, and revoked tasks it got back and resumed with the state they kept.
    restores: int = 0
    restores_cancelled: int = 0
    resumed: int = 0
    #: Tasks restoring their state right now (assigned, not running yet).
    restoring: tuple[tuple[str, int], ...] = ()


class ScaleOutWorker(Protocol):
    """This replica's share of a scaled-out job."""

    async def start(self) -> None:
        """Join the group (create internal topics first); returns once running."""

    def assignment(self) -> list[tuple[str, int]]:
        """The tasks this worker owns now: (stage uid, partition)."""

    def statistics(self) -> ScaleOutStatistics:
        """Rebalances, restores, commits and lag so far."""

    async def wait(self) -> None:
        """Until the worker stops; raises what made it fail."""

    async def stop(self) -> None:
        """A planned stop: commit every task and leave the group at once."""

    async def cancel(self) -> None:
        """Stop without committing (what is open is aborted or fenced later)."""


class ScaleOutBackend(Protocol):
    """Runs scaled-out jobs on some shared log (Kafka). Registered as an entry point."""

    def can_read(self, source: Source[Any]) -> bool:
        """Whether this backend can share ``source``'s input among workers."""

    def create_worker(self, settings: ScaleOutSettings, job: ScaleOutJob) -> ScaleOutWorker: ...


__all__ = [
    "Boundedness",
    "HopSpec",
    "INPUT_INDEX_HEADER",
    "InputStatus",
    "ReaderOutput",
    "SCALE_OUT_ENTRY_POINTS",
    "ScaleOutBackend",
    "ScaleOutJob",
    "ScaleOutSettings",
    "ScaleOutStatistics",
    "ScaleOutWorker",
    "Sink",
    "SinkWriter",
    "SinkWriterContext",
    "Source",
    "SourceMetrics",
    "SourceReader",
    "SourceReaderContext",
    "StageSpec",
    "StageTask",
    "TaskPorts",
]
