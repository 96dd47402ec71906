"""What an operator knows about where it runs, and what user functions see of it.

:class:`OperatorContext` is the runtime's view (subtask, parallelism, the task
to post control messages to); :class:`RuntimeContext` is the narrow, public
view handed to a user function's ``open(ctx)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from flowactors.errors import FlowactorsError
from flowactors.runtime.budget import TurnBudget
from flowactors.state.backend import (
    AggregatingState,
    ListState,
    MapState,
    ReducingState,
    ValueState,
)
from flowactors.state.descriptors import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    ValueStateDescriptor,
)

T = TypeVar("T")

if TYPE_CHECKING:
    from flowactors.runtime.config import ExecutionConfig
    from flowactors.time.clock import ProcessingTimeService


class Counter:
    """A metric that only goes up."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def inc(self, n: int = 1) -> None:
        self.count += n

    def get_count(self) -> int:
        return self.count


class Gauge:
    """A metric whose value is read from a function when metrics are collected."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], float]) -> None:
        self.fn = fn

    def get_value(self) -> float:
        return self.fn()


class MetricGroup:
    """User metrics of one operator subtask (``ctx.get_metric_group().counter("n")``)."""

    def __init__(self) -> None:
        self.metrics: dict[str, Counter | Gauge] = {}

    def counter(self, name: str) -> Counter:
        metric = self.metrics.get(name)
        if not isinstance(metric, Counter):
            metric = self.metrics[name] = Counter()
        return metric

    def gauge(self, name: str, fn: Callable[[], float]) -> Gauge:
        metric = self.metrics[name] = Gauge(fn)
        return metric

    def values(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, m in self.metrics.items():
            try:
                out[name] = m.count if isinstance(m, Counter) else m.get_value()
            except Exception:  # a gauge of something already closed: not worth a failure
                continue
        return out


class ReaderMetrics:
    """What a source reader reported about its progress (``flowactors.spi.SourceMetrics``)."""

    __slots__ = ("commit_seconds_total", "commits", "lags", "last_commit_seconds")

    def __init__(self) -> None:
        #: ``(topic, partition) -> records behind``.
        self.lags: dict[tuple[str, int], int] = {}
        self.commits = 0
        self.commit_seconds_total = 0.0
        self.last_commit_seconds: float | None = None

    def report_lag(self, topic: str, partition: int, lag: int) -> None:
        self.lags[(topic, partition)] = max(0, int(lag))

    def forget_lag(self, topic: str, partition: int) -> None:
        self.lags.pop((topic, partition), None)

    def report_commit(self, seconds: float) -> None:
        self.commits += 1
        self.commit_seconds_total += seconds
        self.last_commit_seconds = seconds


@dataclass(eq=False)
class OperatorContext:
    """Everything an operator instance needs to know about its place in the job."""

    job_name: str
    operator_name: str
    uid: str
    subtask_index: int
    parallelism: int
    max_parallelism: int
    config: ExecutionConfig
    #: Posts a message to the owning task's control lane.
    post_control: Callable[[Any], None]
    #: The processing-time clock and timer scheduler of the owning task.
    processing_time: ProcessingTimeService
    metric_group: MetricGroup = field(default_factory=MetricGroup)
    #: The keyed state backend of a keyed operator (``None`` elsewhere).
    keyed_backend: Any = None
    #: Restarts of the job so far (0 on the first run).
    attempt: int = 0
    #: Unique per run of the job.
    run_id: str = ""
    #: Whether the job takes checkpoints.
    checkpointing: bool = False
    #: The highest parallelism any run of the job gave this operator (this one included).
    highest_parallelism: int = 1
    #: The owning task's time budget: long work yields when it is spent.
    turn: TurnBudget = field(default_factory=TurnBudget)


class RuntimeContext:
    """Handed to ``open(ctx)`` of every user function class.

    Keyed state is reached through the ``get_*_state`` methods on keyed
    streams; elsewhere they raise :class:`~flowactors.FlowactorsError`.
    """

    def __init__(self, op_ctx: OperatorContext) -> None:
        self._op_ctx = op_ctx

    def get_index_of_this_subtask(self) -> int:
        return self._op_ctx.subtask_index

    def get_number_of_parallel_subtasks(self) -> int:
        return self._op_ctx.parallelism

    def get_max_number_of_parallel_subtasks(self) -> int:
        return self._op_ctx.max_parallelism

    def get_task_name(self) -> str:
        return self._op_ctx.operator_name

    def get_job_name(self) -> str:
        return self._op_ctx.job_name

    def get_metric_group(self) -> MetricGroup:
        return self._op_ctx.metric_group

    def _backend(self) -> Any:
        backend = self._op_ctx.keyed_backend
        if backend is None:
            raise FlowactorsError(
                f"keyed state is only available on a keyed stream (after key_by); "
                f"operator {self._op_ctx.operator_name!r} is not keyed"
            )
        return backend

    def get_state(self, descriptor: ValueStateDescriptor[T]) -> ValueState[T]:
        """Value state of the current key."""
        return self._backend().get_state(descriptor)  # type: ignore[no-any-return]

    def get_list_state(self, descriptor: ListStateDescriptor[T]) -> ListState[T]:
        return self._backend().get_state(descriptor)  # type: ignore[no-any-return]

    def get_map_state(self, descriptor: MapStateDescriptor[Any]) -> MapState[Any, Any]:
        return self._backend().get_state(descriptor)  # type: ignore[no-any-return]

    def get_reducing_state(self, descriptor: ReducingStateDescriptor[T]) -> ReducingState[T]:
        return self._backend().get_state(descriptor)  # type: ignore[no-any-return]

    def get_aggregating_state(
        self, descriptor: AggregatingStateDescriptor[Any]
    ) -> AggregatingState[Any]:
        return self._backend().get_state(descriptor)  # type: ignore[no-any-return]
