"""``DataStream`` and ``KeyedStream``: the program a user writes, as a logical graph.

Every method adds a :class:`~flowactors.runtime.graph.Transformation` and
returns a new stream; nothing runs until the environment executes it.

>>> import asyncio
>>> from flowactors import StreamExecutionEnvironment
>>> env = StreamExecutionEnvironment()
>>> words = env.from_collection(["a", "b", "a"])
>>> counts = words.map(lambda w: (w, 1)).key_by(lambda t: t[0]).sum(1)
>>> asyncio.run(counts.execute_and_collect())
[('a', 1), ('b', 1), ('a', 2)]
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, overload

from flowactors.api.aggregations import Aggregation, field_aggregation
from flowactors.api.connected import ConnectedStreams, IntervalJoin
from flowactors.api.functions import (
    FilterFunction,
    FlatMapFunction,
    Function,
    KeyedProcessFunction,
    MapFunction,
    ProcessFunction,
    ReduceFunction,
    per_subtask,
)
from flowactors.api.sinks import CollectSink, PrintSink, StreamSink, TextFileSink
from flowactors.api.windowed import AllWindowedStream, WindowedStream
from flowactors.errors import InvalidGraphError
from flowactors.runtime.async_io import AsyncMapOperator
from flowactors.runtime.graph import Input, Transformation
from flowactors.runtime.keyed import (
    KeyedFunctionOperator,
    KeyedProcessOperator,
    KeyedReduceOperator,
)
from flowactors.runtime.mailbox import CONTROL, Mailbox
from flowactors.runtime.operators import StreamOperator, is_async_callable
from flowactors.runtime.source_sink import SinkOperator
from flowactors.runtime.stateless import (
    FilterOperator,
    FlatMapOperator,
    MapOperator,
    ProcessOperator,
)
from flowactors.runtime.watermark_ops import TimestampsAndWatermarksOperator
from flowactors.runtime.writer import Partitioning, PartitionSpec
from flowactors.spi import Sink
from flowactors.time.watermarks import WatermarkStrategy
from flowactors.windows.assigners import WindowAssigner

if TYPE_CHECKING:
    from flowactors.api.environment import JobClient, StreamExecutionEnvironment
    from flowactors.api.output_tag import OutputTag

T = TypeVar("T")
K = TypeVar("K")
U = TypeVar("U")


class DataStream(Generic[T]):
    """A stream of records of type ``T``."""

    def __init__(
        self,
        env: StreamExecutionEnvironment,
        inputs: list[Input],
        transformation: Transformation | None = None,
    ) -> None:
        self._env = env
        self._inputs = inputs
        self._transformation = transformation

    # -- building blocks ---------------------------------------------------

    def _add(
        self,
        name: str,
        factory: Callable[[], StreamOperator],
        *,
        inputs: list[Input] | None = None,
    ) -> Transformation:
        t = Transformation(name, factory, list(inputs if inputs is not None else self._inputs))
        return t

    def _then(self, name: str, factory: Callable[[], StreamOperator]) -> DataStream[Any]:
        return self._derive(self._add(name, factory))

    def _derive(self, t: Transformation) -> DataStream[Any]:
        """The stream ``t`` produces, in this stream's environment."""
        return DataStream(self._env, [Input(t)], t)

    def _op(self) -> Transformation:
        if self._transformation is None:
            raise InvalidGraphError(
                "name(), uid() and set_parallelism() apply to the stream an operator "
                "produced, not to a union, a partitioning or a side output"
            )
        return self._transformation

    def _partitioned(self, spec: PartitionSpec) -> DataStream[T]:
        return DataStream(
            self._env, [Input(i.upstream, spec, i.tag, i.input_index) for i in self._inputs]
        )

    # -- per-operator settings ---------------------------------------------

    def name(self, name: str) -> Self:
        """Name the operator that produced this stream (shown in logs, metrics and errors)."""
        self._op().name = name
        return self

    def uid(self, uid: str) -> Self:
        """A stable id for the operator's state in checkpoints and savepoints."""
        self._op().uid = uid
        return self

    def set_parallelism(self, parallelism: int) -> Self:
        t = self._op()
        _check_parallelism(parallelism)
        if t.max_parallelism is not None and parallelism > t.max_parallelism:
            raise InvalidGraphError(
                f"{t.name!r} supports parallelism of at most {t.max_parallelism}, got {parallelism}"
            )
        t.parallelism = parallelism
        return self

    def get_parallelism(self) -> int:
        t = self._op()
        return t.parallelism if t.parallelism is not None else self._env.get_parallelism()

    # -- transformations ---------------------------------------------------

    @overload
    def map(self, fn: MapFunction[T, U]) -> DataStream[U]: ...
    @overload
    def map(self, fn: Callable[[T], Awaitable[U]]) -> DataStream[U]: ...
    @overload
    def map(self, fn: Callable[[T], U]) -> DataStream[U]: ...
    def map(self, fn: Any) -> DataStream[Any]:
        """One output per record. ``fn`` may be ``async def`` (awaited one at a time)."""
        return self._per_record("map", fn)

    @overload
    def flat_map(self, fn: FlatMapFunction[T, U]) -> DataStream[U]: ...
    @overload
    def flat_map(self, fn: Callable[[T], AsyncIterable[U]]) -> DataStream[U]: ...
    @overload
    def flat_map(self, fn: Callable[[T], Awaitable[Iterable[U] | None]]) -> DataStream[U]: ...
    @overload
    def flat_map(self, fn: Callable[[T], Iterable[U] | None]) -> DataStream[U]: ...
    def flat_map(self, fn: Any) -> DataStream[Any]:
        """Zero or more outputs per record: ``fn`` returns an iterable (or async iterable)."""
        return self._per_record("flat_map", fn)

    def filter(self, fn: FilterFunction[T] | Callable[[T], object]) -> DataStream[T]:
        """Keep the records for which ``fn`` is true (or returns a truthy awaitable result)."""
        return self._per_record("filter", fn)

    def _per_record(self, kind: str, fn: Any) -> DataStream[Any]:
        """``map``, ``flat_map`` or ``filter`` (a keyed stream runs function classes keyed)."""
        make = per_subtask(fn)
        name, operator = _PER_RECORD[kind]
        return self._then(name, lambda: operator(make()))

    def process(self, fn: ProcessFunction[T, U]) -> DataStream[U]:
        """``fn.process_element(value, ctx, out)`` per record; side outputs via ``ctx.output``."""
        make = per_subtask(fn)
        return self._then("Process", lambda: ProcessOperator(make()))

    def map_async(
        self,
        fn: Callable[[T], Awaitable[U]],
        capacity: int = 100,
        ordered: bool = True,
        timeout: float | None = None,
    ) -> DataStream[U]:
        """Run up to ``capacity`` calls of ``async def fn`` at once (Flink's async I/O).

        Results keep input order when ``ordered``; a call longer than
        ``timeout`` seconds fails the job with ``TimeoutError``.
        """
        if not is_async_callable(getattr(fn, "map", fn)):
            raise InvalidGraphError("map_async needs an async function (async def ...)")
        if capacity < 1:
            raise InvalidGraphError(f"map_async capacity must be >= 1, got {capacity}")
        make = per_subtask(fn)
        return self._then("AsyncMap", lambda: AsyncMapOperator(make(), capacity, ordered, timeout))

    def assign_timestamps_and_watermarks(self, strategy: WatermarkStrategy[T]) -> DataStream[T]:
        """Give records event timestamps and generate watermarks with ``strategy``.

        Watermarks that arrive from upstream are replaced by the ones generated
        here (except the final one at the end of input). Prefer passing the
        strategy to ``from_source`` where possible: there, watermarks are
        generated per source split.
        """
        return self._then(
            "Timestamps/Watermarks", lambda: TimestampsAndWatermarksOperator(strategy)
        )

    def connect(self, other: DataStream[U]) -> ConnectedStreams[T, U]:
        """Two streams into one two-input operator (``process``, ``flat_map``, ``map``)."""
        return ConnectedStreams(self, other)

    def window_all(self, assigner: WindowAssigner) -> AllWindowedStream[T]:
        """Windows over the whole stream (runs as one subtask, like Flink's windowAll)."""
        return AllWindowedStream(self, assigner)

    def key_by(self, key_selector: Callable[[T], K]) -> KeyedStream[K, T]:
        """Partition by key: records with equal keys go to the same subtask, in order."""
        if not callable(key_selector):
            raise InvalidGraphError(f"key_by needs a callable, got {key_selector!r}")
        spec = PartitionSpec(Partitioning.HASH, key_selector)
        return KeyedStream(
            self._env,
            [Input(i.upstream, spec, i.tag, i.input_index) for i in self._inputs],
            key_selector,
        )

    def reinterpret_as_keyed(self, key_selector: Callable[[T], K]) -> KeyedStream[K, T]:
        """Key a stream whose input is already partitioned by this key (Flink's
        ``DataStreamUtils.reinterpretAsKeyedStream``).

        In scale-out mode the keyed operator then stays in the stage that reads the
        topic: no internal topic, no hop through the broker. The producers of the
        topic must give all records of a key the same partition (the usual case:
        they set the record key). In one process the stream is keyed as by
        ``key_by`` (a local shuffle), so results are the same in both modes.
        """
        if not callable(key_selector):
            raise InvalidGraphError(f"reinterpret_as_keyed needs a callable, got {key_selector!r}")
        spec = PartitionSpec(Partitioning.HASH, key_selector, reinterpreted=True)
        return KeyedStream(
            self._env,
            [Input(i.upstream, spec, i.tag, i.input_index) for i in self._inputs],
            key_selector,
        )

    def union(self, *others: DataStream[T]) -> DataStream[T]:
        """All records of this stream and the others (no order between them)."""
        inputs = list(self._inputs)
        for other in others:
            if other._env is not self._env:
                raise InvalidGraphError("union() needs streams of the same environment")
            inputs.extend(other._inputs)
        return DataStream(self._env, inputs)

    def rebalance(self) -> DataStream[T]:
        """Spread records round-robin over the next operator's subtasks."""
        return self._partitioned(PartitionSpec(Partitioning.REBALANCE))

    def broadcast(self) -> DataStream[T]:
        """Send every record to every subtask of the next operator."""
        return self._partitioned(PartitionSpec(Partitioning.BROADCAST))

    def global_(self) -> DataStream[T]:
        """Send every record to subtask 0 of the next operator."""
        return self._partitioned(PartitionSpec(Partitioning.GLOBAL))

    def forward(self) -> DataStream[T]:
        """Subtask *i* sends to subtask *i* (needs equal parallelism)."""
        return self._partitioned(PartitionSpec(Partitioning.FORWARD))

    def get_side_output(self, tag: OutputTag[U]) -> DataStream[U]:
        """The records the producing operator sent to ``tag``."""
        return DataStream(self._env, [Input(self._op(), tag=tag)])

    # -- sinks -------------------------------------------------------------

    def sink_to(self, sink: Sink[T], name: str = "Sink") -> DataStreamSink:
        t = Transformation(
            name,
            lambda: SinkOperator(sink),
            list(self._inputs),
            max_parallelism=sink.max_parallelism,
            is_sink=True,
            sink=sink,
        )
        self._env._add_sink(t)
        return DataStreamSink(t)

    def print(self, prefix: str | None = None) -> DataStreamSink:
        """Print every record on stdout (``"n> "`` prefix names the subtask when parallel)."""
        return self.sink_to(PrintSink(prefix), name="Print to Std. Out")

    def write_text(self, path: str) -> DataStreamSink:
        """Write ``str(record)`` lines to part files in directory ``path``."""
        return self.sink_to(TextFileSink(path), name="Text File Sink")

    # -- running -----------------------------------------------------------

    async def execute_and_collect(self, job_name: str = "collect") -> list[T]:
        """Run the job (this stream and any other sinks) and return every record of this stream."""
        sink: CollectSink[T] = CollectSink()
        self.sink_to(sink, name="Collect Sink")
        await self._env.execute(job_name)
        return sink.results

    def execute_and_stream(self, job_name: str = "stream") -> JobStream[T]:
        """Run the job and yield this stream's records as they arrive.

        ``async for x in stream.execute_and_stream()`` starts the job on its first
        iteration; ``async with stream.execute_and_stream() as results`` starts it at
        once and hands back the job's client as ``results.client`` (for savepoints,
        metrics and live keyed state) before the first record. Closing the iterator
        (leaving the ``async with``) cancels the job; a plain ``async for`` left early
        closes it when the event loop finalises it. A failure of the job raises
        ``JobFailedError`` after the records that arrived before it.
        """
        return JobStream(self, job_name)


_PER_RECORD: dict[str, tuple[str, Callable[[Any], StreamOperator]]] = {
    "map": ("Map", MapOperator),
    "flat_map": ("FlatMap", FlatMapOperator),
    "filter": ("Filter", FilterOperator),
}


class DataStreamSink:
    """The end of a stream; set the sink operator's name, uid and parallelism."""

    def __init__(self, transformation: Transformation) -> None:
        self._t = transformation

    def name(self, name: str) -> DataStreamSink:
        self._t.name = name
        return self

    def uid(self, uid: str) -> DataStreamSink:
        self._t.uid = uid
        return self

    def set_parallelism(self, parallelism: int) -> DataStreamSink:
        _check_parallelism(parallelism)
        if self._t.max_parallelism is not None and parallelism > self._t.max_parallelism:
            raise InvalidGraphError(
                f"{self._t.name!r} supports parallelism of at most {self._t.max_parallelism}"
            )
        self._t.parallelism = parallelism
        return self


class KeyedStream(DataStream[T], Generic[K, T]):
    """A stream partitioned by key; ``reduce`` and the aggregations keep state per key."""

    def __init__(
        self,
        env: StreamExecutionEnvironment,
        inputs: list[Input],
        key_selector: Callable[[T], K],
    ) -> None:
        super().__init__(env, inputs)
        self.key_selector = key_selector

    @overload
    def process(self, fn: KeyedProcessFunction[K, T, U]) -> DataStream[U]: ...
    @overload
    def process(self, fn: ProcessFunction[T, U]) -> DataStream[U]: ...
    def process(self, fn: Any) -> DataStream[Any]:
        """``KeyedProcessFunction``: per record with keyed state, timers and side outputs."""
        make = per_subtask(fn)
        key = self.key_selector
        return self._then("KeyedProcess", lambda: KeyedProcessOperator(make(), key))

    def _per_record(self, kind: str, fn: Any) -> DataStream[Any]:
        """Function classes (``MapFunction``...) on a keyed stream may use keyed state: the
        current key is set before every call. Plain callables run as on any stream."""
        if not isinstance(fn, Function):
            return super()._per_record(kind, fn)
        make = per_subtask(fn)
        key = self.key_selector
        name = _PER_RECORD[kind][0]
        return self._then(name, lambda: KeyedFunctionOperator(kind, make(), key))

    def interval_join(self, other: KeyedStream[Any, U]) -> IntervalJoin[T, U]:
        """Join with ``other`` on equal keys within a time interval (``between(lo, hi)``)."""
        if not isinstance(other, KeyedStream):
            raise InvalidGraphError("interval_join() needs a keyed stream (key_by first)")
        return IntervalJoin(self, other)

    def window(self, assigner: WindowAssigner) -> WindowedStream[K, T]:
        """Cut each key's records into windows (tumbling, sliding, session, global)."""
        return WindowedStream(self, assigner)

    def reduce(
        self,
        fn: ReduceFunction[T] | Callable[[T, T], T] | Callable[[T, T], Awaitable[T]],
    ) -> DataStream[T]:
        """Running reduce per key: emits ``fn(previous_result, record)`` for every record."""
        make = per_subtask(fn)
        key = self.key_selector
        return self._then("Reduce", lambda: KeyedReduceOperator(make(), key))

    def sum(self, field: int | str) -> DataStream[T]:
        """Running sum of ``field`` per key; other fields come from the key's first record."""
        return self._aggregate("sum", field)

    def min(self, field: int | str) -> DataStream[T]:
        """Running minimum of ``field`` per key; other fields from the key's first record."""
        return self._aggregate("min", field)

    def max(self, field: int | str) -> DataStream[T]:
        """Running maximum of ``field`` per key; other fields from the key's first record."""
        return self._aggregate("max", field)

    def min_by(self, field: int | str) -> DataStream[T]:
        """The record with the smallest ``field`` per key so far (the first one on ties)."""
        return self._aggregate("min_by", field)

    def max_by(self, field: int | str) -> DataStream[T]:
        """The record with the largest ``field`` per key so far (the first one on ties)."""
        return self._aggregate("max_by", field)

    def _aggregate(self, kind: Aggregation, field: int | str) -> DataStream[T]:
        name, reduce = field_aggregation(kind, field)
        return self.reduce(reduce).name(name)


def _check_parallelism(parallelism: int) -> None:
    if not isinstance(parallelism, int) or isinstance(parallelism, bool) or parallelism < 1:
        raise InvalidGraphError(f"parallelism must be an int >= 1, got {parallelism!r}")


class JobStream(Generic[T]):
    """The records of a running job as they arrive (``execute_and_stream``), and its client."""

    def __init__(self, stream: DataStream[T], job_name: str) -> None:
        self._stream = stream
        self._job_name = job_name
        self._client: JobClient | None = None
        self._records: AsyncGenerator[T, None] | None = None

    @property
    def client(self) -> JobClient:
        """The running job (once started: by ``async with`` or the first iteration)."""
        if self._client is None:
            raise InvalidGraphError(
                "the job has not started yet: use `async with stream.execute_and_stream() "
                "as results` to have its client before the first record"
            )
        return self._client

    async def start(self) -> JobClient:
        """Start the job (once) and return its client."""
        if self._client is None:
            env = self._stream._env
            mailbox = Mailbox(1, env.config.mailbox_capacity)
            self._stream.sink_to(StreamSink(mailbox), name="Stream Sink")
            client = self._client = await env.execute_async(self._job_name)
            client._master.on_done(lambda: mailbox.put_control(None))
            self._records = _records(client, mailbox)
        return self._client

    def __aiter__(self) -> JobStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._records is None:
            await self.start()
        assert self._records is not None
        return await self._records.__anext__()

    async def aclose(self) -> None:
        """Cancel the job (if it runs) and stop iterating."""
        if self._records is not None:
            await self._records.aclose()
        if self._client is not None:
            await self._client.cancel()  # also when the records were never iterated

    async def __aenter__(self) -> JobStream[T]:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _records(client: JobClient, mailbox: Mailbox) -> AsyncGenerator[Any, None]:
    # A generator, so that the event loop finalises (and cancels the job of) a stream
    # that was left early and never closed.
    try:
        while True:
            channel, message = await mailbox.take()
            if channel == CONTROL:
                while (item := mailbox.poll()) is not None:
                    for value in item[1]:
                        yield value
                await client.wait()
                return
            for value in message:
                yield value
    finally:
        await client.cancel()
