"""``WindowedStream`` (``key_by(...).window(...)``) and ``AllWindowedStream`` (``window_all``).

>>> import asyncio
>>> from flowactors import StreamExecutionEnvironment, WatermarkStrategy
>>> from flowactors.windows import TumblingEventTimeWindows
>>> env = StreamExecutionEnvironment()
>>> strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(
...     lambda e, ts: e[1])
>>> clicks = env.from_collection([("a", 1_000), ("b", 2_000), ("a", 61_000)])
>>> clicks = clicks.assign_timestamps_and_watermarks(strategy)
>>> per_minute = (clicks.map(lambda e: (e[0], 1)).key_by(lambda e: e[0])
...               .window(TumblingEventTimeWindows.of(60_000)).sum(1))
>>> sorted(asyncio.run(per_minute.execute_and_collect()))
[('a', 1), ('a', 1), ('b', 1)]
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, overload

from flowactors.api.aggregations import Aggregation, field_aggregation
from flowactors.api.functions import (
    AggregateFunction,
    ProcessAllWindowFunction,
    ProcessWindowFunction,
    ReduceFunction,
    per_subtask,
)
from flowactors.api.output_tag import OutputTag
from flowactors.errors import InvalidGraphError
from flowactors.runtime.graph import Input, Transformation
from flowactors.runtime.window_contents import (
    AggregateContents,
    EvictingContents,
    ListContents,
    ReduceContents,
    WindowContents,
)
from flowactors.runtime.window_operator import WindowOperator
from flowactors.runtime.writer import Partitioning, PartitionSpec
from flowactors.time import to_millis
from flowactors.windows.assigners import WindowAssigner
from flowactors.windows.evictors import Evictor
from flowactors.windows.triggers import Trigger

if TYPE_CHECKING:
    from flowactors.api.datastream import DataStream, KeyedStream


T = TypeVar("T")
K = TypeVar("K")
R = TypeVar("R")
U = TypeVar("U")
IN = TypeVar("IN")
OUT = TypeVar("OUT")

#: What gets a fired window's elements (or pre-aggregated result) of type ``IN``, emits ``OUT``.
WindowFunction = ProcessWindowFunction[IN, OUT, Any] | ProcessAllWindowFunction[IN, OUT]


def _no_key(value: Any) -> None:
    return None


class _Windowed(Generic[T]):
    def __init__(
        self,
        stream: DataStream[Any],
        inputs: list[Input],
        key_selector: Callable[[Any], Any],
        assigner: WindowAssigner,
        keyed: bool,
    ) -> None:
        if not isinstance(assigner, WindowAssigner):
            raise InvalidGraphError(f"window() needs a WindowAssigner, got {assigner!r}")
        self._stream = stream
        self._inputs = inputs
        self._key_selector = key_selector
        self._assigner = assigner
        self._keyed = keyed
        self._trigger: Trigger | None = None
        self._lateness = 0
        self._late_tag: Any = None
        self._evictor: Evictor | None = None

    def trigger(self, trigger: Trigger) -> Self:
        """Replace the assigner's default trigger."""
        self._trigger = trigger
        return self

    def allowed_lateness(self, lateness: timedelta | int) -> Self:
        """Keep windows this long after their end; late elements fire them again."""
        ms = to_millis(lateness)
        if ms < 0:
            raise InvalidGraphError(f"allowed lateness must be >= 0, got {ms} ms")
        self._lateness = ms
        return self

    def evictor(self, evictor: Evictor) -> Self:
        """Remove elements from each window before or after its function runs.

        The window then keeps its elements even for ``reduce`` and ``aggregate``
        (the function is applied to what the evictor leaves when the window fires).

        >>> import asyncio
        >>> from flowactors import StreamExecutionEnvironment
        >>> from flowactors.windows import CountEvictor, CountTrigger, GlobalWindows
        >>> env = StreamExecutionEnvironment()
        >>> last_two = (env.from_collection([1, 2, 3, 4]).key_by(lambda v: 0)
        ...     .window(GlobalWindows.create()).trigger(CountTrigger.of(1))
        ...     .evictor(CountEvictor.of(2)).reduce(lambda a, b: a + b))
        >>> asyncio.run(last_two.execute_and_collect())
        [1, 3, 5, 7]
        """
        if not isinstance(evictor, Evictor):
            raise InvalidGraphError(f"evictor() needs an Evictor, got {evictor!r}")
        self._evictor = evictor
        return self

    def side_output_late_data(self, tag: OutputTag[T]) -> Self:
        """Send elements that arrive after their windows were dropped to ``tag``."""
        self._late_tag = tag
        return self

    def _build(
        self,
        name: str,
        contents: Callable[[Any], WindowContents],
        fn: Any,
        window_fn: Any,
    ) -> DataStream[Any]:
        make_fn = per_subtask(fn)
        make_window_fn = per_subtask(window_fn)
        if self._assigner.merging:
            trigger = self._trigger or self._assigner.default_trigger()
            if not trigger.can_merge():
                raise InvalidGraphError(
                    f"{type(trigger).__name__} cannot be used with merging (session) windows"
                )
            if (
                contents is AggregateContents
                and self._evictor is None
                and type(fn).merge is AggregateFunction.merge
            ):
                raise InvalidGraphError(
                    "session windows merge accumulators: the AggregateFunction needs merge()"
                )
        key, assigner, trigger = self._key_selector, self._assigner, self._trigger
        evictor = self._evictor

        def make_contents() -> WindowContents:
            inner = contents(make_fn())
            return inner if evictor is None else EvictingContents(inner, evictor)

        lateness, late_tag, keyed = self._lateness, self._late_tag, self._keyed
        t = Transformation(
            name,
            lambda: WindowOperator(
                key,
                assigner,
                trigger,
                make_contents(),
                make_window_fn(),
                lateness,
                late_tag,
                keyed,
            ),
            list(self._inputs),
            max_parallelism=None if keyed else 1,
        )
        return self._stream._derive(t)

    @overload
    def reduce(
        self, fn: ReduceFunction[T] | Callable[[T, T], T], window_fn: None = None
    ) -> DataStream[T]: ...
    @overload
    def reduce(
        self, fn: ReduceFunction[T] | Callable[[T, T], T], window_fn: WindowFunction[T, U]
    ) -> DataStream[U]: ...
    def reduce(self, fn: Any, window_fn: Any = None) -> DataStream[Any]:
        """Reduce each window incrementally; ``window_fn`` (a ProcessWindowFunction)
        then gets the one result with the window."""
        return self._build("Window(Reduce)", ReduceContents, fn, window_fn)

    @overload
    def aggregate(
        self, fn: AggregateFunction[T, Any, R], window_fn: None = None
    ) -> DataStream[R]: ...
    @overload
    def aggregate(
        self, fn: AggregateFunction[T, Any, R], window_fn: WindowFunction[R, U]
    ) -> DataStream[U]: ...
    def aggregate(self, fn: Any, window_fn: Any = None) -> DataStream[Any]:
        """Aggregate each window incrementally with an ``AggregateFunction``."""
        return self._build("Window(Aggregate)", AggregateContents, fn, window_fn)

    def process(self, fn: WindowFunction[T, U]) -> DataStream[U]:
        """Keep every element; ``fn.process(...)`` sees them all when the window fires."""
        return self._build("Window(Process)", lambda _: ListContents(), None, fn)

    def sum(self, field: int | str) -> DataStream[T]:
        return self._aggregate("sum", field)

    def min(self, field: int | str) -> DataStream[T]:
        return self._aggregate("min", field)

    def max(self, field: int | str) -> DataStream[T]:
        return self._aggregate("max", field)

    def min_by(self, field: int | str) -> DataStream[T]:
        return self._aggregate("min_by", field)

    def max_by(self, field: int | str) -> DataStream[T]:
        return self._aggregate("max_by", field)

    def _aggregate(self, kind: Aggregation, field: int | str) -> DataStream[T]:
        name, reduce = field_aggregation(kind, field)
        return self.reduce(reduce).name(f"Window({name})")


class WindowedStream(_Windowed[T], Generic[K, T]):
    """A keyed stream cut into windows per key."""

    def __init__(self, stream: KeyedStream[K, T], assigner: WindowAssigner) -> None:
        super().__init__(stream, stream._inputs, stream.key_selector, assigner, keyed=True)


class AllWindowedStream(_Windowed[T]):
    """The whole stream cut into windows (one subtask; functions get no key)."""

    def __init__(self, stream: DataStream[T], assigner: WindowAssigner) -> None:
        spec = PartitionSpec(Partitioning.GLOBAL)
        inputs = [Input(i.upstream, spec, i.tag, i.input_index) for i in stream._inputs]
        super().__init__(stream, inputs, _no_key, assigner, keyed=False)
