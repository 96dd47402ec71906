"""The operators of ``DataStream`` that keep no keyed state: map, filter, flat_map, process.

``map``, ``filter`` and ``flat_map`` work on the whole batch at once (a C-level
``map``/``filter`` over the values where possible); ``process`` calls its
function once per record with a context and a collector
(:func:`~flowactors.runtime.invoke.call_per_record`).
"""

from __future__ import annotations

import inspect
from itertools import compress
from typing import Any

from flowactors.runtime.collector import Collector, SideOutputs
from flowactors.runtime.invoke import RecordScope, call_per_record, listed, resolve_batch
from flowactors.runtime.operators import StreamOperator, Timestamps, UserFunctionOperator, Values

__all__ = [
    "FilterOperator",
    "FlatMapOperator",
    "MapOperator",
    "NonKeyedTimerService",
    "ProcessContext",
    "ProcessOperator",
]


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
