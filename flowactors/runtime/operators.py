"""Stream operators: the units a chain is made of, and the built-in ones.

An operator takes whole batches (``process_batch(values, timestamps, keys)``)
and pushes its results to its :class:`Output`, which calls the next chained
operator directly (no queue hop) and/or hands them to record writers. Built-in
operators work on the whole batch at once (a list comprehension for ``map``,
one mask for ``filter``); only functions that need a collector or a context
are called per record with them.

A user function that raises makes its operator raise :class:`OperatorFailure`
naming the operator, so the job error says where it broke.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import compress, repeat
from typing import TYPE_CHECKING, Any, Protocol

from flowactors.runtime.context import OperatorContext, RuntimeContext
from flowactors.runtime.failures import OperatorFailure
from flowactors.runtime.invoke import RecordScope, call_per_record, listed, resolve, resolve_batch

if TYPE_CHECKING:
    from flowactors.checkpoint.snapshot import OperatorSnapshot, RestoreView

Values = list[Any]
Timestamps = list[int | None] | None


def is_async_callable(fn: Any) -> bool:
    """True for ``async def`` functions, methods, partials and async ``__call__``."""
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - we want the bound method itself
    return call is not None and inspect.iscoroutinefunction(call)


def user_method(fn: Any, name: str) -> Callable[..., Any]:
    """The method ``name`` of a function object (``MapFunction.map``) or ``fn`` itself."""
    method = getattr(fn, name, None)
    if method is not None and callable(method) and not inspect.isfunction(fn):
        return method  # type: ignore[no-any-return]
    if not callable(fn):
        raise TypeError(f"expected a callable or an object with a {name!r} method, got {fn!r}")
    return fn  # type: ignore[no-any-return]


class ChannelWriter(Protocol):
    """What sends an operator's output to other tasks (the runtime's ``RecordWriter``)."""

    async def emit(self, values: Values, timestamps: Timestamps) -> None: ...

    async def emit_watermark(self, timestamp: int) -> None: ...

    async def emit_watermark_status(self, idle: bool) -> None: ...


class Output:
    """Where an operator's records go: chained operators first, then writers."""

    def __init__(self) -> None:
        self.operators: list[StreamOperator] = []
        self.writers: list[ChannelWriter] = []
        self.emit: Callable[[Values, Timestamps], Awaitable[None]] = self._emit_none

    def seal(self) -> None:
        """Pick the cheapest ``emit`` for the targets this output ended up with."""
        targets: list[Callable[[Values, Timestamps], Awaitable[None]]] = [
            *(op.process_batch for op in self.operators),
            *(w.emit for w in self.writers),
        ]
        if not targets:
            self.emit = self._emit_none
        elif len(targets) == 1:
            self.emit = targets[0]
        else:
            self._targets = targets
            self.emit = self._emit_all

    @property
    def connected(self) -> bool:
        return bool(self.operators or self.writers)

    async def _emit_none(self, values: Values, timestamps: Timestamps) -> None:
        return None

    async def _emit_all(self, values: Values, timestamps: Timestamps) -> None:
        for target in self._targets:
            await target(values, timestamps)

    async def emit_watermark(self, timestamp: int) -> None:
        for op in self.operators:
            await op.process_watermark(timestamp)
        for writer in self.writers:
            await writer.emit_watermark(timestamp)

    async def emit_watermark_status(self, idle: bool) -> None:
        for op in self.operators:
            await op.process_watermark_status(idle)
        for writer in self.writers:
            await writer.emit_watermark_status(idle)


class StreamOperator:
    """Base of all operators. One instance per subtask; driven by one task."""

    #: ``True`` for operators whose head position needs the keys a hash edge carries.
    keyed = False

    def __init__(self) -> None:
        self.output = Output()
        self.side_outputs: dict[Any, Output] = {}
        self.ctx: OperatorContext
        self.current_watermark: int = -(2**63)

    @property
    def name(self) -> str:
        return self.ctx.operator_name

    def setup(self, ctx: OperatorContext) -> None:
        self.ctx = ctx

    def side_output(self, tag: Any) -> Output:
        out = self.side_outputs.get(tag)
        if out is None:
            out = self.side_outputs[tag] = Output()
        return out

    def failure(self, cause: BaseException) -> OperatorFailure:
        return OperatorFailure(self.ctx.operator_name, cause)

    @contextmanager
    def attributing_failures(self) -> Iterator[None]:
        """An error raised inside is this operator's (one raised further down the chain
        is already attributed to its own operator)."""
        try:
            yield
        except OperatorFailure:
            raise
        except Exception as exc:
            raise self.failure(exc) from exc

    async def open(self) -> None:
        """Called once before the first record (tail of the chain first)."""

    async def process_batch(
        self, values: Values, timestamps: Timestamps, keys: Values | None = None
    ) -> None:
        raise NotImplementedError

    async def process_watermark(self, timestamp: int) -> None:
        """Event time advanced to ``timestamp``: fire what it enables, then pass it on."""
        self.current_watermark = timestamp
        await self.output.emit_watermark(timestamp)
        for out in self.side_outputs.values():
            await out.emit_watermark(timestamp)

    async def process_watermark_status(self, idle: bool) -> None:
        await self.output.emit_watermark_status(idle)

    async def emit_collected(self, collector: Collector, side: SideOutputs) -> None:
        """Emit what user code collected (main output, then side outputs)."""
        result, result_ts = collector.take()
        if result:
            await self.output.emit(result, result_ts)
        await side.flush(self)

    # -- checkpoints (the defaults suit stateless operators) -----------------

    async def initialize_state(self, restore: RestoreView) -> None:
        """Take back this subtask's state from a checkpoint (before ``open``)."""

    async def prepare_snapshot_pre_barrier(self, checkpoint_id: int) -> None:
        """Before the barrier passes: flush what must be part of the snapshot."""

    def snapshot_state(self, checkpoint_id: int) -> OperatorSnapshot | None:
        """The synchronous part of a snapshot: cheap copies, no I/O."""
        return None

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` is complete (commit external side effects now)."""

    async def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` will never complete."""

    def snapshot_finished(self, checkpoint_id: int) -> None:
        """The asynchronous part of this subtask's snapshot is written (or failed)."""

    async def on_control(self, message: Any) -> None:
        """A control-lane message addressed to this operator (timer, async result...)."""
        raise NotImplementedError(
            f"{type(self).__name__} got unexpected control message {message!r}"
        )

    async def finish(self) -> None:
        """All input has been processed: emit whatever is still pending."""

    async def close(self) -> None:
        """Release resources; called once, also after a failure or cancellation."""


class UserFunctionOperator(StreamOperator):
    """An operator that runs one user function object (with ``open``/``close``)."""

    method_name = "__call__"

    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn
        self.call = user_method(fn, self.method_name)
        self.is_async = is_async_callable(self.call)

    async def open(self) -> None:
        opener = getattr(self.fn, "open", None)
        if opener is not None and callable(opener) and not inspect.isfunction(self.fn):
            try:
                await resolve(opener(RuntimeContext(self.ctx)))
            except Exception as exc:
                raise self.failure(exc) from exc

    async def close(self) -> None:
        closer = getattr(self.fn, "close", None)
        if closer is not None and callable(closer) and not inspect.isfunction(self.fn):
            try:
                await resolve(closer())
            except Exception as exc:
                raise self.failure(exc) from exc


class MapOperator(UserFunctionOperator):
    method_name = "map"

    async def process_batch(
        self, values: Values, timestamps: Timestamps, keys: Values | None = None
    ) -> None:
        try:
            if self.is_async:
                call = self.call
                out = [await call(v) for v in values]
            else:
                out = await resolve_batch(list(map(self.call, values)))
        except Exception as exc:
            raise self.failure(exc) from exc
        await self.output.emit(out, timestamps)


class FilterOperator(UserFunctionOperator):
    method_name = "filter"

    def __init__(self, fn: Any) -> None:
        super().__init__(fn)
        # Until a batch has shown that the function returns plain values (not
        # awaitables), results are checked; afterwards the C-level filter() is used.
        self.checked = self.is_async

    async def process_batch(
        self, values: Values, timestamps: Timestamps, keys: Values | None = None
    ) -> None:
        if timestamps is None and self.checked and not self.is_async:
            try:
                kept = list(filter(self.call, values))
            except Exception as exc:
                raise self.failure(exc) from exc
            if kept:
                await self.output.emit(kept, None)
            return
        try:
            mask = list(map(self.call, values))
            if mask:
                if inspect.isawaitable(mask[0]):
                    mask = await resolve_batch(mask)
                    self.is_async = True  # a plain callable returning awaitables
                self.checked = True
        except Exception as exc:
            raise self.failure(exc) from exc
        kept = list(compress(values, mask))
        if kept:
            await self.output.emit(
                kept, None if timestamps is None else list(compress(timestamps, mask))
            )


class FlatMapOperator(UserFunctionOperator):
    """``fn(value)`` returns an iterable (or async iterable) of results."""

    method_name = "flat_map"

    async def process_batch(
        self, values: Values, timestamps: Timestamps, keys: Values | None = None
    ) -> None:
        fn = self.call
        out: list[Any] = []
        out_ts: list[int | None] | None = None if timestamps is None else []
        try:
            if timestamps is None and not self.is_async:
                for v in values:
                    result = fn(v)
                    if hasattr(result, "__aiter__") or inspect.isawaitable(result):
                        out.extend(await listed(result))
                    elif result is not None:
                        out.extend(result)
            else:
                ts_iter = iter(timestamps) if timestamps is not None else None
                for v in values:
                    result = fn(v)
                    items = (
                        await listed(result)
                        if hasattr(result, "__aiter__") or inspect.isawaitable(result)
                        else (list(result) if result is not None else [])
                    )
                    out.extend(items)
                    if ts_iter is not None and out_ts is not None:
                        t = next(ts_iter)
                        out_ts.extend([t] * len(items))
        except Exception as exc:
            raise self.failure(exc) from exc
        if out:
            await self.output.emit(out, out_ts)


class Collector:
    """``out.collect(value)`` for process functions; the input's timestamp rides along."""

    __slots__ = ("timestamp", "timestamps", "values")

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.timestamps: list[int | None] = []
        self.timestamp: int | None = None

    def collect(self, value: Any) -> None:
        self.values.append(value)
        self.timestamps.append(self.timestamp)

    def collect_all(self, values: Iterable[Any]) -> None:
        before = len(self.values)
        self.values.extend(values)
        self.timestamps.extend(repeat(self.timestamp, len(self.values) - before))

    def take(self) -> tuple[list[Any], list[int | None] | None]:
        values, timestamps = self.values, self.timestamps
        self.values, self.timestamps = [], []
        if all(t is None for t in timestamps):
            return values, None
        return values, timestamps


class SideOutputs:
    """Records sent to side outputs during a batch, by tag, flushed after it."""

    __slots__ = ("buffers",)

    def __init__(self) -> None:
        self.buffers: dict[Any, tuple[list[Any], list[int | None]]] = {}

    def add(self, tag: Any, value: Any, timestamp: int | None) -> None:
        if tag is None:
            raise TypeError("ctx.output(tag, value) needs an OutputTag, got None")
        buf = self.buffers.get(tag)
        if buf is None:
            buf = self.buffers[tag] = ([], [])
        buf[0].append(value)
        buf[1].append(timestamp)

    async def flush(self, operator: StreamOperator) -> None:
        if not self.buffers:
            return
        buffers, self.buffers = self.buffers, {}
        for tag, (values, timestamps) in buffers.items():
            out = operator.side_outputs.get(tag)
            if out is not None:
                ts = None if all(t is None for t in timestamps) else timestamps
                await out.emit(values, ts)


class ProcessContext:
    """The ``ctx`` of ``ProcessFunction.process_element``."""

    __slots__ = ("_operator", "_side", "_timestamp")

    def __init__(self, operator: StreamOperator, side: SideOutputs) -> None:
        self._operator = operator
        self._side = side
        self._timestamp: int | None = None

    def timestamp(self) -> int | None:
        """Event time of the current record, or ``None`` if it has none."""
        return self._timestamp

    def output(self, tag: Any, value: Any) -> None:
        """Send ``value`` to the side output ``tag`` (with the current timestamp)."""
        self._side.add(tag, value, self._timestamp)

    def current_watermark(self) -> int:
        return self._operator.current_watermark

    def timer_service(self) -> NonKeyedTimerService:
        """Current time, as in Flink; registering timers needs a keyed stream."""
        return NonKeyedTimerService(self._operator)


class NonKeyedTimerService:
    """``ctx.timer_service()`` of a non-keyed process function: it tells the time;
    timers need a key, so registering one raises."""

    __slots__ = ("_operator",)

    def __init__(self, operator: StreamOperator) -> None:
        self._operator = operator

    def current_watermark(self) -> int:
        return self._operator.current_watermark

    def current_processing_time(self) -> int:
        return self._operator.ctx.processing_time.now()

    def _no_timers(self, timestamp: int) -> None:
        raise TypeError(
            "timers are only available on keyed streams: use key_by(...).process(...) "
            "with a KeyedProcessFunction"
        )

    register_event_time_timer = _no_timers
    register_processing_time_timer = _no_timers
    delete_event_time_timer = _no_timers
    delete_processing_time_timer = _no_timers


class ProcessOperator(UserFunctionOperator):
    """Runs ``ProcessFunction.process_element(value, ctx, out)`` per record."""

    method_name = "process_element"

    async def open(self) -> None:
        self.collector = Collector()
        self.side = SideOutputs()
        self.pctx = ProcessContext(self, self.side)
        self.args = (self.pctx, self.collector)
        self.scope = RecordScope(self.pctx, self.collector)
        await super().open()

    async def process_batch(
        self, values: Values, timestamps: Timestamps, keys: Values | None = None
    ) -> None:
        try:
            await call_per_record(self.call, self.args, values, timestamps, None, self.scope)
        except Exception as exc:
            raise self.failure(exc) from exc
        await self.emit_collected(self.collector, self.side)
