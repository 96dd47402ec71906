"""Operators with two inputs: connected streams and the interval join.

Records of the first input arrive through ``process_batch``, those of the
second through ``process_batch2`` (the task routes by input channel). The
operator's watermark is the minimum over both inputs' channels. On connected
*keyed* streams (both inputs keyed) the operator has keyed state and timers
like any keyed operator, and both inputs share the state of a key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowactors.runtime.collector import Collector, SideOutputs
from flowactors.runtime.context import OperatorContext
from flowactors.runtime.invoke import RecordScope, call_per_record, resolve
from flowactors.runtime.keyed import KeyedContext, KeyedOperator, UserTimers
from flowactors.runtime.operators import StreamOperator, Timestamps, UserFunctionOperator, Values
from flowactors.runtime.stateless import ProcessContext
from flowactors.time import MAX_WATERMARK

CO_PROCESS = "process"
CO_FLAT_MAP = "flat_map"
CO_MAP = "map"

_METHODS = {
    CO_PROCESS: ("process_element1", "process_element2"),
    CO_FLAT_MAP: ("flat_map1", "flat_map2"),
    CO_MAP: ("map1", "map2"),
}


class TwoInputs:
    """Routes the task's two inputs to ``_process(side, ...)`` (0: first, 1: second)."""

    async def _process(
        self, side: int, values: Values, timestamps: Timestamps, keys: Values | None
    ) -> None:
        raise NotImplementedError

    async def process_batch(
        self, values: Values, timestamps: Timestamps, keys: Values | None = None
    ) -> None:
        await self._process(0, values, timestamps, keys)

    async def process_batch2(
        self, values: Values, timestamps: Timestamps, keys: Values | None = None
    ) -> None:
        await self._process(1, values, timestamps, keys)


class CoOperator(TwoInputs, UserTimers, KeyedOperator, UserFunctionOperator):
    """``connect(...).process/flat_map/map``, keyed when both inputs are."""

    def __init__(
        self,
        kind: str,
        fn: Any,
        key_selectors: tuple[Callable[[Any], Any], Callable[[Any], Any]] | None,
        map_fns: tuple[Callable[[Any], Any], Callable[[Any], Any]] | None = None,
    ) -> None:
        self.method_name = _METHODS[kind][0]
        if fn is not None:
            UserFunctionOperator.__init__(self, fn)
        else:  # map(fn1, fn2) with two plain functions
            StreamOperator.__init__(self)
        self.fn = fn
        self.kind = kind
        self.key_selectors = key_selectors
        self.key_selector = key_selectors[0] if key_selectors else (lambda v: None)
        self.calls: tuple[Callable[..., Any], Callable[..., Any]]
        if map_fns is not None:
            self.calls = map_fns
        else:
            first, second = _METHODS[kind]
            self.calls = (getattr(fn, first), getattr(fn, second))
        on_timer = getattr(fn, "on_timer", None)
        self.on_timer = on_timer if callable(on_timer) else None

    @property
    def is_keyed(self) -> bool:
        return self.key_selectors is not None

    def setup(self, ctx: OperatorContext) -> None:
        if self.is_keyed:
            KeyedOperator.setup(self, ctx)
        else:
            StreamOperator.setup(self, ctx)
            self.side = SideOutputs()

    async def open(self) -> None:
        out = self.collector = Collector()
        self.pctx: Any = KeyedContext(self) if self.is_keyed else ProcessContext(self, self.side)
        self.scope = RecordScope(self.pctx, self.collector, self.backend if self.is_keyed else None)
        self.result: Callable[[Any, Any], None] | None = None
        if self.kind == CO_PROCESS:
            self.args: tuple[Any, ...] = (self.pctx, out)
        elif self.kind == CO_FLAT_MAP:
            self.args = (out,)
        else:
            self.args = ()
            self.result = lambda value, result: out.collect(result)
        if self.fn is not None:
            await UserFunctionOperator.open(self)

    async def close(self) -> None:
        if self.is_keyed:
            self.timers.shutdown()
        if self.fn is not None:
            await UserFunctionOperator.close(self)

    async def _process(
        self, side: int, values: Values, timestamps: Timestamps, keys: Values | None
    ) -> None:
        if self.is_keyed:
            assert self.key_selectors is not None
            self.key_selector = self.key_selectors[side]
            keys = self.keys_of(values, keys)
        else:
            keys = None
        try:
            await call_per_record(
                self.calls[side], self.args, values, timestamps, keys, self.scope, self.result
            )
        except Exception as exc:
            raise self.failure(exc) from exc
        await self.emit_collected(self.collector, self.side)

    async def process_watermark(self, timestamp: int) -> None:
        if self.is_keyed:
            await KeyedOperator.process_watermark(self, timestamp)
        else:
            await StreamOperator.process_watermark(self, timestamp)


class JoinContext:
    """``ctx`` of ``ProcessJoinFunction.process_element``."""

    __slots__ = ("_left", "_right", "_side")

    def __init__(self, side: SideOutputs) -> None:
        self._side = side
        self._left = 0
        self._right = 0

    def left_timestamp(self) -> int:
        return self._left

    def right_timestamp(self) -> int:
        return self._right

    def timestamp(self) -> int:
        """The pair's timestamp: the larger of the two."""
        return max(self._left, self._right)

    def output(self, tag: Any, value: Any) -> None:
        self._side.add(tag, value, self.timestamp())


class IntervalJoinOperator(TwoInputs, KeyedOperator, UserFunctionOperator):
    """Joins left ``l`` with right ``r`` of the same key when
    ``l.ts + lower <= r.ts <= l.ts + upper`` (bounds optionally exclusive).

    Each side's elements are buffered per key and timestamp until the watermark
    makes a match impossible; elements behind the watermark are late: they go to
    that side's late-data tag if it has one, and are counted and dropped otherwise.
    """

    method_name = "process_element"

    def __init__(
        self,
        fn: Any,
        key_selectors: tuple[Callable[[Any], Any], Callable[[Any], Any]],
        lower: int,
        upper: int,
        lower_inclusive: bool,
        upper_inclusive: bool,
        late_tags: tuple[Any, Any] = (None, None),
    ) -> None:
        UserFunctionOperator.__init__(self, fn)
        self.late_tags = late_tags
        self.key_selectors = key_selectors
        self.key_selector = key_selectors[0]
        self.lower = lower if lower_inclusive else lower + 1
        self.upper = upper if upper_inclusive else upper - 1
        if self.lower > self.upper:
            raise ValueError(f"the join interval [{lower}, {upper}] is empty")
        self.late_records_dropped = 0

    def setup(self, ctx: OperatorContext) -> None:
        super().setup(ctx)
        # key -> {timestamp: [values]}
        self.buffers = (self.backend.table("join-left"), self.backend.table("join-right"))

    async def open(self) -> None:
        self.collector = Collector()
        self.jctx = JoinContext(self.side)
        await UserFunctionOperator.open(self)

    async def _process(
        self, side: int, values: Values, timestamps: Timestamps, keys: Values | None
    ) -> None:
        self.key_selector = self.key_selectors[side]
        keys = self.keys_of(values, keys)
        if timestamps is None:
            raise self.failure(ValueError("interval_join needs event timestamps on both inputs"))
        watermark = self.timers.current_watermark
        mine, other = self.buffers[side], self.buffers[1 - side]
        # For a left element at t, right partners lie in [t + lower, t + upper];
        # for a right element at t, left partners lie in [t - upper, t - lower].
        lo, hi = (self.lower, self.upper) if side == 0 else (-self.upper, -self.lower)
        late_tag = self.late_tags[side]
        try:
            for v, t, k in zip(values, timestamps, keys):
                if t is None:
                    raise ValueError("interval_join needs event timestamps on both inputs")
                if t < watermark:
                    if late_tag is None:
                        self.late_records_dropped += 1
                    else:
                        self.side.add(late_tag, v, t)
                    continue
                self.backend.current_key = k
                by_time = mine.get(k)
                if by_time is None:
                    by_time = {}
                by_time.setdefault(t, []).append(v)
                mine[k] = by_time  # stores it back for on-disk state
                partners = other.get(k)
                if partners:
                    for pt, pvalues in partners.items():
                        if t + lo <= pt <= t + hi:
                            for pv in pvalues:
                                await self._join(v, t, pv, pt, side)
                # Drop the element once the watermark passes the last time a partner
                # could have: left at t + upper, right at t - lower.
                cleanup = t + (self.upper if side == 0 else -self.lower)
                if cleanup < MAX_WATERMARK:
                    self.timers.register_event_time_timer((k, (side, t)), max(cleanup, t))
        except Exception as exc:
            raise self.failure(exc) from exc
        await self.emit_collected(self.collector, self.side)

    async def _join(self, v: Any, t: int, pv: Any, pt: int, side: int) -> None:
        left, lt, right, rt = (v, t, pv, pt) if side == 0 else (pv, pt, v, t)
        ctx = self.jctx
        ctx._left, ctx._right = lt, rt
        self.collector.timestamp = max(lt, rt)
        await resolve(self.call(left, right, ctx, self.collector))

    async def on_event_time(self, timestamp: int, namespace: Any) -> None:
        side, t = namespace
        key = self.backend.current_key
        buffer = self.buffers[side]
        by_time = buffer.get(key)
        if by_time is not None:
            by_time.pop(t, None)
            if by_time:
                buffer[key] = by_time
            else:
                del buffer[key]

    async def flush_timer_output(self) -> None:
        await self.emit_collected(self.collector, self.side)
