"""Keyed operators: keyed state, timers, and the operators of ``KeyedStream``.

A keyed operator owns a state backend for the key groups of its subtask and a
timer service. Before calling user code for a record (or a timer) it sets the
backend's current key; state handles and ``ctx.timer_service()`` act on that
key. When its input comes over a hash edge the keys arrive with the batch;
when it is chained behind its input (parallelism 1) it computes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from flowactors.checkpoint.snapshot import KeyedSnapshot, OperatorSnapshot, RestoreView
from flowactors.errors import CheckpointError, InvalidKeyError
from flowactors.runtime.collector import Collector, SideOutputs
from flowactors.runtime.context import OperatorContext
from flowactors.runtime.failures import OperatorFailure, key_by_name
from flowactors.runtime.invoke import RecordScope, call_per_record, listed, resolve
from flowactors.runtime.operators import (
    StreamOperator,
    Timestamps,
    UserFunctionOperator,
    Values,
    is_async_callable,
    user_method,
)
from flowactors.runtime.timers import InternalTimerService, KeyedTimerService, TimeDomain
from flowactors.state.backend import HeapKeyedStateBackend
from flowactors.state.keygroups import check_keys, key_group_range

_MISSING: Any = object()
#: The state name of the built-in keyed aggregations (``reduce``, ``sum``, ``min``, ...).
REDUCE_STATE = "value"
_LEGACY_REDUCE_STATE = "reduce"


class KeyedContext:
    """The ``ctx`` of keyed process functions (and of ``on_timer``)."""

    __slots__ = ("_domain", "_operator", "_timer_service", "_timestamp")

    def __init__(self, operator: KeyedOperator) -> None:
        self._operator = operator
        self._timer_service = KeyedTimerService(operator.timers, operator.backend)
        self._timestamp: int | None = None
        self._domain: TimeDomain | None = None

    def timestamp(self) -> int | None:
        """Event time of the current record (or of the firing event-time timer)."""
        return self._timestamp

    def get_current_key(self) -> Any:
        return self._operator.backend.current_key

    def timer_service(self) -> KeyedTimerService:
        return self._timer_service

    def current_watermark(self) -> int:
        return self._operator.timers.current_watermark

    def time_domain(self) -> TimeDomain | None:
        """In ``on_timer``: which kind of timer fired."""
        return self._domain

    def output(self, tag: Any, value: Any) -> None:
        self._operator.side.add(tag, value, self._timestamp)


class KeySelectorCheck(StreamOperator):
    """A ``key_by`` chained (at parallelism 1) into an operator that does not use keys.

    It evaluates the key selector as a hash edge would, so a selector that fails (or
    returns an unhashable key) fails the job here too, attributed to ``key_by``, and
    passes the batch on unchanged.
    """

    def __init__(self, key_selector: Callable[[Any], Any], downstream: str) -> None:
        super().__init__()
        self.key_selector = key_selector
        self.downstream = downstream

    async def process_batch(
        self, values: Values, timestamps: Timestamps, keys: Values | None = None
    ) -> None:
        try:
            check_keys(list(map(self.key_selector, values)), self.key_selector, self.downstream)
        except Exception as exc:
            raise OperatorFailure(key_by_name(self.downstream), exc) from exc
        await self.output.emit(values, timestamps)


class KeyedOperator(StreamOperator):
    """Base of operators with keyed state and timers."""

    keyed = True

    def __init__(self, key_selector: Callable[[Any], Any]) -> None:
        super().__init__()
        self.key_selector = key_selector

    def setup(self, ctx: OperatorContext) -> None:
        super().setup(ctx)
        key_groups = key_group_range(ctx.max_parallelism, ctx.parallelism, ctx.subtask_index)
        factory = ctx.config.state_backend
        self.backend: Any = (
            HeapKeyedStateBackend(key_groups, ctx.max_parallelism, ctx.processing_time.now)
            if factory is None
            else factory.create(
                key_groups,
                ctx.max_parallelism,
                ctx.processing_time.now,
                f"{ctx.uid}-{ctx.subtask_index}",
            )
        )
        ctx.keyed_backend = self.backend
        ctx.metric_group.gauge("numKeyedStateEntries", self.backend.num_entries)
        #: Keys of the batch being processed (to name an unhashable one in errors).
        self.batch_keys: Values = []
        self.timers = InternalTimerService(ctx.processing_time, self._on_processing_time)
        self.side = SideOutputs()

    def keys_of(self, values: Values, keys: Values | None) -> Values:
        """The keys of a batch: as they came over the hash edge, or computed here."""
        if keys is None:
            try:
                keys = list(map(self.key_selector, values))
            except Exception as exc:
                raise OperatorFailure(key_by_name(self.name), exc) from exc
        self.batch_keys = keys
        return keys

    def failure(self, cause: BaseException) -> OperatorFailure:
        # An unhashable key surfaces as a TypeError from the first dict it meets;
        # name the key, and blame the key selector.
        if isinstance(cause, TypeError) and self.batch_keys:
            try:
                check_keys(self.batch_keys, self.key_selector, self.ctx.operator_name)
            except InvalidKeyError as key_error:
                key_error.__cause__ = cause
                return OperatorFailure(key_by_name(self.name), key_error)
        return super().failure(cause)

    # -- checkpoints ---------------------------------------------------------

    def snapshot_state(self, checkpoint_id: int) -> OperatorSnapshot | None:
        backend = self.backend
        native = getattr(backend, "native_snapshot", None)
        return OperatorSnapshot(
            keyed=KeyedSnapshot(
                tables=backend.snapshot_tables(),
                namespaced=set(backend.namespaced),
                event_timers=list(self.timers.event.live),
                processing_timers=list(self.timers.processing.live),
                max_parallelism=backend.max_parallelism,
                native=None if native is None else native(),
            )
        )

    async def capture_snapshot(self, checkpoint_id: int) -> OperatorSnapshot | None:
        # The task is suspended until this returns, so the state stays as the barrier
        # found it while the capture yields: heap tables are copied in slices of the time
        # budget, and RocksDB flushes and hard-links its files in a worker thread.
        backend = self.backend
        sliced = getattr(backend, "snapshot_tables_sliced", None)
        native = getattr(backend, "native_snapshot", None)
        if sliced is None and native is None:
            return self.snapshot_state(checkpoint_id)
        tables = {} if sliced is None else await sliced(self.ctx.turn.pause_if_expired)
        return OperatorSnapshot(
            keyed=KeyedSnapshot(
                tables=tables,
                namespaced=set(backend.namespaced),
                event_timers=list(self.timers.event.live),
                processing_timers=list(self.timers.processing.live),
                max_parallelism=backend.max_parallelism,
                native=None if native is None else await asyncio.to_thread(native),
            )
        )

    def snapshot_finished(self, checkpoint_id: int) -> None:
        self.backend.snapshot_released()

    async def initialize_state(self, restore: RestoreView) -> None:
        backend = self.backend
        native = restore.native_parts()
        if native:
            restore_native = getattr(backend, "restore_native", None)
            if restore_native is None:
                raise CheckpointError(
                    f"operator {restore.uid!r} was snapshotted with the RocksDB state backend: "
                    "restore it with env.set_state_backend(RocksDBStateBackend(...))"
                )
            await restore_native(native, restore.checkpoint.read)
        turn = self.ctx.turn
        for group in await restore.key_groups(backend.key_groups, backend.max_parallelism):
            await turn.pause_if_expired()
            for name, entries in group.tables.items():
                backend.restore_table(name, entries, name in group.namespaced)
            for ts, owner in group.event_timers:
                self.timers.register_event_time_timer(owner, ts)
            for ts, owner in group.processing_timers:
                self.timers.register_processing_time_timer(owner, ts)

    async def process_watermark(self, timestamp: int) -> None:
        # Everything the watermark made due fires before it goes on, in slices of the
        # task's time budget: the task stays inside this message while it yields.
        await self.fire_event_timers(timestamp)
        await super().process_watermark(timestamp)

    async def fire_event_timers(self, watermark: int) -> None:
        """Fire every event-time timer due at ``watermark``, yielding between slices."""
        await self._fire_due(self.timers.due_event_timers(watermark), self.on_event_time)

    async def _on_processing_time(self, now: int) -> None:
        await self._fire_due(self.timers.due_processing_timers(now), self.on_processing_time)

    async def _fire_due(
        self, due: Iterator[tuple[int, Any]], fire: Callable[[int, Any], Awaitable[None]]
    ) -> None:
        backend = self.backend
        turn = self.ctx.turn
        for n, (ts, (key, namespace)) in enumerate(due, 1):
            backend.current_key = key
            await fire(ts, namespace)
            if not n & 63 and turn.expired():
                await self.flush_timer_output()  # what fired so far goes on meanwhile
                await turn.pause()
        await self.flush_timer_output()

    async def on_event_time(self, timestamp: int, namespace: Any) -> None:
        """An event-time timer of the current key (and ``namespace``, e.g. a window) fired."""

    async def on_processing_time(self, timestamp: int, namespace: Any) -> None:
        """A processing-time timer of the current key (and ``namespace``) fired."""

    async def flush_timer_output(self) -> None:
        """Emit what timers produced (after all due timers fired)."""

    async def close(self) -> None:
        self.timers.shutdown()
        try:
            await super().close()
        finally:
            closer = getattr(self.backend, "close", None)
            if closer is not None:
                closer()


class UserTimers:
    """``on_timer(timestamp, ctx, out)`` of a user function, for keyed operators that
    run one (keyed process functions, keyed co-process functions)."""

    on_timer: Callable[..., Any] | None
    pctx: Any
    collector: Collector
    side: SideOutputs

    if TYPE_CHECKING:  # provided by the operator class it is mixed into

        def failure(self, cause: BaseException) -> OperatorFailure: ...

        async def emit_collected(self, collector: Collector, side: SideOutputs) -> None: ...

    async def _fire(self, timestamp: int, domain: TimeDomain) -> None:
        if self.on_timer is None:
            return
        ctx = self.pctx
        # As in Flink: ctx.timestamp() is the timer's time in both domains, but
        # records emitted by a processing-time timer carry no event timestamp.
        ctx._timestamp = timestamp
        ctx._domain = domain
        self.collector.timestamp = timestamp if domain is TimeDomain.EVENT_TIME else None
        try:
            await resolve(self.on_timer(timestamp, ctx, self.collector))
        except Exception as exc:
            raise self.failure(exc) from exc
        finally:
            ctx._domain = None

    async def on_event_time(self, timestamp: int, namespace: Any) -> None:
        await self._fire(timestamp, TimeDomain.EVENT_TIME)

    async def on_processing_time(self, timestamp: int, namespace: Any) -> None:
        await self._fire(timestamp, TimeDomain.PROCESSING_TIME)

    async def flush_timer_output(self) -> None:
        await self.emit_collected(self.collector, self.side)


class KeyedProcessOperator(UserTimers, KeyedOperator, UserFunctionOperator):
    """``KeyedProcessFunction``: ``process_element(value, ctx, out)`` and ``on_timer``."""

    method_name = "process_element"

    def __init__(self, fn: Any, key_selector: Callable[[Any], Any]) -> None:
        UserFunctionOperator.__init__(self, fn)
        self.key_selector = key_selector
        on_timer = getattr(fn, "on_timer", None)
        self.on_timer = on_timer if callable(on_timer) else None

    async def open(self) -> None:
        self.collector = Collector()
        self.pctx = KeyedContext(self)
        self.args = (self.pctx, self.collector)
        self.scope = RecordScope(self.pctx, self.collector, self.backend)
        await super().open()

    async def process_batch(
        self, values: Values, timestamps: Timestamps, keys: Values | None = None
    ) -> None:
        keys = self.keys_of(values, keys)
        try:
            await call_per_record(self.call, self.args, values, timestamps, keys, self.scope)
        except Exception as exc:
            raise self.failure(exc) from exc
        await self.emit_collected(self.collector, self.side)


class KeyedFunctionOperator(KeyedOperator, UserFunctionOperator):
    """``map``/``flat_map``/``filter`` of a function class on a keyed stream: keyed state
    in ``open(ctx)`` works because the current key is set before every call."""

    def __init__(self, kind: str, fn: Any, key_selector: Callable[[Any], Any]) -> None:
        self.method_name = kind
        UserFunctionOperator.__init__(self, fn)
        self.key_selector = key_selector
        self.kind = kind

    async def open(self) -> None:
        out = self.collector = Collector()
        self.scope = RecordScope(collector=out, backend=self.backend)
        if self.kind == "map":
            self.result: Callable[[Any, Any], None] = lambda value, result: out.collect(result)
        elif self.kind == "filter":
            self.result = lambda value, keep: out.collect(value) if keep else None
        else:
            user_call = self.call
            self.call = lambda value: listed(user_call(value))
            self.result = lambda value, results: out.collect_all(results)
        await super().open()

    async def process_batch(
        self, values: Values, timestamps: Timestamps, keys: Values | None = None
    ) -> None:
        keys = self.keys_of(values, keys)
        try:
            await call_per_record(self.call, (), values, timestamps, keys, self.scope, self.result)
        except Exception as exc:
            raise self.failure(exc) from exc
        await self.emit_collected(self.collector, self.side)


class KeyedReduceOperator(KeyedOperator):
    """Running ``reduce`` per key: emits the new aggregate for every record."""

    def __init__(self, reduce_fn: Any, key_selector: Callable[[Any], Any]) -> None:
        super().__init__(key_selector)
        self.fn = reduce_fn
        self.call = user_method(reduce_fn, "reduce")
        self.is_async = is_async_callable(self.call)

    def setup(self, ctx: OperatorContext) -> None:
        super().setup(ctx)
        #: key -> current aggregate: the reduce reads and writes the table directly. Its
        #: name is the one every built-in keyed aggregation's state has (``"value"``), which
        #: is what ``client.keyed_state(uid, "value")`` and ``flowactors state read`` use.
        self.state = self.backend.table(REDUCE_STATE)

    async def initialize_state(self, restore: RestoreView) -> None:
        await super().initialize_state(restore)
        # Snapshots taken before the table was named "value" call it "reduce".
        legacy = self.backend.tables.get(_LEGACY_REDUCE_STATE)
        if legacy:
            for key, value in list(legacy.items()):
                self.state[key] = value
                legacy.pop(key, None)

    async def process_batch(
        self, values: Values, timestamps: Timestamps, keys: Values | None = None
    ) -> None:
        state = self.state
        get = state.get
        fn = self.call
        out: list[Any] = []
        append = out.append
        try:
            if keys is None:  # chained behind its input: compute keys here
                key_of = self.key_selector
                if self.is_async:
                    for v in values:
                        k = key_of(v)
                        acc = get(k, _MISSING)
                        if acc is not _MISSING:
                            v = await fn(acc, v)
                        state[k] = v
                        append(v)
                else:
                    for v in values:
                        k = key_of(v)
                        acc = get(k, _MISSING)
                        if acc is not _MISSING:
                            v = fn(acc, v)
                        state[k] = v
                        append(v)
            elif self.is_async:
                for k, v in zip(keys, values):
                    acc = get(k, _MISSING)
                    if acc is not _MISSING:
                        v = await fn(acc, v)
                    state[k] = v
                    append(v)
            else:
                for k, v in zip(keys, values):
                    acc = get(k, _MISSING)
                    if acc is not _MISSING:
                        v = fn(acc, v)
                    state[k] = v
                    append(v)
        except Exception as exc:
            if keys is None:
                # Keys were computed in the loop: was it the key selector that failed?
                self.keys_of(values, None)  # raises, attributed to key_by, if it was
            raise self.failure(exc) from exc
        await self.output.emit(out, timestamps)
