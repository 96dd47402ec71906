"""Triggers: when a window's contents are emitted (and whether they are dropped).

A trigger sees every element added to a window, and the timers it registered
through its context. Its answers are :class:`TriggerResult` values: emit the
window (``FIRE``), drop its contents (``PURGE``), both, or nothing. Triggers
keep their own per-window state through ``ctx.get_partitioned_state``.

A custom trigger subclasses :class:`Trigger`.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from datetime import timedelta
from typing import Any, Protocol, Self

from flowactors.state.descriptors import ReducingStateDescriptor, ValueStateDescriptor
from flowactors.time import to_millis


class TriggerResult(enum.Enum):
    CONTINUE = (False, False)
    FIRE = (True, False)
    PURGE = (False, True)
    FIRE_AND_PURGE = (True, True)

    @property
    def is_fire(self) -> bool:
        return self.value[0]

    @property
    def is_purge(self) -> bool:
        return self.value[1]


class TriggerContext(Protocol):
    """What a trigger may do for the current key and window."""

    def register_event_time_timer(self, timestamp: int) -> None: ...
    def delete_event_time_timer(self, timestamp: int) -> None: ...
    def register_processing_time_timer(self, timestamp: int) -> None: ...
    def delete_processing_time_timer(self, timestamp: int) -> None: ...
    def get_current_watermark(self) -> int: ...
    def get_current_processing_time(self) -> int: ...
    def get_partitioned_state(self, descriptor: Any) -> Any: ...
    def merge_partitioned_state(self, descriptor: Any) -> None: ...


class Trigger(ABC):
    @abstractmethod
    def on_element(
        self, element: Any, timestamp: int | None, window: Any, ctx: TriggerContext
    ) -> TriggerResult: ...

    def on_event_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.CONTINUE

    def on_processing_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.CONTINUE

    def can_merge(self) -> bool:
        return False

    def on_merge(self, window: Any, ctx: TriggerContext) -> None:
        raise TypeError(f"{type(self).__name__} cannot be used with merging windows")

    def clear(self, window: Any, ctx: TriggerContext) -> None:  # noqa: B027 - optional hook
        """The window is gone: delete timers and state the trigger kept for it."""


class EventTimeTrigger(Trigger):
    """Fires once the watermark passes the window's end (immediately for late elements)."""

    def on_element(
        self, element: Any, timestamp: int | None, window: Any, ctx: TriggerContext
    ) -> TriggerResult:
        if window.max_timestamp() <= ctx.get_current_watermark():
            return TriggerResult.FIRE  # late but within allowed lateness
        ctx.register_event_time_timer(window.max_timestamp())
        return TriggerResult.CONTINUE

    def on_event_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.FIRE if time == window.max_timestamp() else TriggerResult.CONTINUE

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: Any, ctx: TriggerContext) -> None:
        if window.max_timestamp() > ctx.get_current_watermark():
            ctx.register_event_time_timer(window.max_timestamp())

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        ctx.delete_event_time_timer(window.max_timestamp())


class ProcessingTimeTrigger(Trigger):
    """Fires when the operator's wall clock passes the window's end."""

    def on_element(
        self, element: Any, timestamp: int | None, window: Any, ctx: TriggerContext
    ) -> TriggerResult:
        ctx.register_processing_time_timer(window.max_timestamp())
        return TriggerResult.CONTINUE

    def on_processing_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.FIRE

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: Any, ctx: TriggerContext) -> None:
        if window.max_timestamp() > ctx.get_current_processing_time():
            ctx.register_processing_time_timer(window.max_timestamp())

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        ctx.delete_processing_time_timer(window.max_timestamp())


def _add(a: int, b: int) -> int:
    return a + b


class CountTrigger(Trigger):
    """Fires when the window holds ``count`` more elements than at its last firing."""

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self.count = count
        self.state: ReducingStateDescriptor[int] = ReducingStateDescriptor("count-trigger", _add)

    @classmethod
    def of(cls, count: int) -> CountTrigger:
        return cls(count)

    def on_element(
        self, element: Any, timestamp: int | None, window: Any, ctx: TriggerContext
    ) -> TriggerResult:
        seen = ctx.get_partitioned_state(self.state)
        seen.add(1)
        if seen.get() >= self.count:
            seen.clear()
            return TriggerResult.FIRE
        return TriggerResult.CONTINUE

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: Any, ctx: TriggerContext) -> None:
        ctx.merge_partitioned_state(self.state)

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        ctx.get_partitioned_state(self.state).clear()


class PurgingTrigger(Trigger):
    """Turns every ``FIRE`` of the wrapped trigger into ``FIRE_AND_PURGE``."""

    def __init__(self, nested: Trigger) -> None:
        self.nested = nested

    @classmethod
    def of(cls, nested: Trigger) -> PurgingTrigger:
        return cls(nested)

    @staticmethod
    def _purging(result: TriggerResult) -> TriggerResult:
        return TriggerResult.FIRE_AND_PURGE if result.is_fire else result

    def on_element(
        self, element: Any, timestamp: int | None, window: Any, ctx: TriggerContext
    ) -> TriggerResult:
        return self._purging(self.nested.on_element(element, timestamp, window, ctx))

    def on_event_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        return self._purging(self.nested.on_event_time(time, window, ctx))

    def on_processing_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        return self._purging(self.nested.on_processing_time(time, window, ctx))

    def can_merge(self) -> bool:
        return self.nested.can_merge()

    def on_merge(self, window: Any, ctx: TriggerContext) -> None:
        self.nested.on_merge(window, ctx)

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        self.nested.clear(window, ctx)


def _min(a: int, b: int) -> int:
    return a if a <= b else b


class _ContinuousTrigger(Trigger):
    """What the continuous triggers share: one pending fire time per window, kept in
    trigger state (``"fire-time"``, reduced with ``min`` so merged sessions keep the
    earliest), armed at the next multiple of the interval (never past the window's
    end). The subclasses name the time domain."""

    def __init__(self, interval_ms: int) -> None:
        if interval_ms <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval_ms
        self.state: ReducingStateDescriptor[int] = ReducingStateDescriptor("fire-time", _min)

    @classmethod
    def of(cls, interval: timedelta | int) -> Self:
        return cls(to_millis(interval))

    def _register(self, ctx: TriggerContext, timestamp: int) -> None:
        raise NotImplementedError

    def _delete(self, ctx: TriggerContext, timestamp: int) -> None:
        raise NotImplementedError

    def _arm(self, time: int, window: Any, ctx: TriggerContext, fire_time: Any) -> None:
        next_fire = min(time + self.interval, window.max_timestamp())
        fire_time.add(next_fire)
        self._register(ctx, next_fire)

    def _fire_if_due(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        fire_time = ctx.get_partitioned_state(self.state)
        if fire_time.get() == time:
            fire_time.clear()
            self._arm(time, window, ctx, fire_time)
            return TriggerResult.FIRE
        return TriggerResult.CONTINUE

    def can_merge(self) -> bool:
        return True

    def on_merge(self, window: Any, ctx: TriggerContext) -> None:
        ctx.merge_partitioned_state(self.state)
        next_fire = ctx.get_partitioned_state(self.state).get()
        if next_fire is not None:
            self._register(ctx, next_fire)

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        fire_time = ctx.get_partitioned_state(self.state)
        pending = fire_time.get()
        if pending is not None:
            self._delete(ctx, pending)
            fire_time.clear()


class ContinuousEventTimeTrigger(_ContinuousTrigger):
    """Fires at every multiple of ``interval`` of event time while the window is open,
    and at the window's end (Flink's trigger of the same name).

    The first element of a window arms the trigger at the next multiple of the
    interval after its timestamp (``ts - ts % interval + interval``, never past
    the window's end); each firing arms the next one. The one pending fire time
    per window is kept in trigger state (``"fire-time"``, reduced with ``min``),
    so merged session windows keep the earliest. Late elements (the window's end
    is behind the watermark, within the allowed lateness) fire at once.

    >>> from flowactors.testing import WindowOperatorTestHarness
    >>> from flowactors.windows import TumblingEventTimeWindows
    >>> h = WindowOperatorTestHarness(
    ...     TumblingEventTimeWindows.of(10_000), lambda v: v[0],
    ...     reduce=lambda a, b: (a[0], a[1] + b[1]),
    ...     trigger=ContinuousEventTimeTrigger.of(3_000))
    >>> h.process_element(("a", 1), 1_000)
    >>> h.process_element(("a", 1), 2_000)
    >>> h.process_watermark(3_000)  # the first multiple of 3 s
    >>> h.process_element(("a", 1), 5_000)
    >>> h.process_watermark(9_999)  # 6 s, 9 s and the window's end
    >>> h.extract_output_values()
    [('a', 2), ('a', 3), ('a', 3), ('a', 3)]
    >>> h.close()
    """

    def _register(self, ctx: TriggerContext, timestamp: int) -> None:
        ctx.register_event_time_timer(timestamp)

    def _delete(self, ctx: TriggerContext, timestamp: int) -> None:
        ctx.delete_event_time_timer(timestamp)

    def on_element(
        self, element: Any, timestamp: int | None, window: Any, ctx: TriggerContext
    ) -> TriggerResult:
        if window.max_timestamp() <= ctx.get_current_watermark():
            return TriggerResult.FIRE  # the window's end has passed: fire at once
        ctx.register_event_time_timer(window.max_timestamp())
        fire_time = ctx.get_partitioned_state(self.state)
        if fire_time.get() is None:
            if timestamp is None:
                raise ValueError(
                    "ContinuousEventTimeTrigger needs event timestamps: the record has none"
                )
            self._arm(timestamp - timestamp % self.interval, window, ctx, fire_time)
        return TriggerResult.CONTINUE

    def on_event_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        if time == window.max_timestamp():
            return TriggerResult.FIRE
        # Not a pending fire time: e.g. the cleanup timer after the allowed lateness.
        return self._fire_if_due(time, window, ctx)


class ContinuousProcessingTimeTrigger(_ContinuousTrigger):
    """Fires at every multiple of ``interval`` of processing time while the window is open
    (Flink's trigger of the same name).

    The first element of a window arms it at the next multiple of the interval
    after the current processing time (never past the window's end); each
    firing arms the next. The pending fire time is trigger state
    (``"fire-time"``, reduced with ``min``, merged for session windows).

    >>> from flowactors.testing import WindowOperatorTestHarness
    >>> from flowactors.windows import GlobalWindows
    >>> h = WindowOperatorTestHarness(
    ...     GlobalWindows.create(), lambda v: 0, reduce=lambda a, b: a + b,
    ...     trigger=ContinuousProcessingTimeTrigger.of(1_000), processing_time=1_500)
    >>> h.process_element(1)
    >>> h.set_processing_time(2_000)
    >>> h.process_element(2)
    >>> h.set_processing_time(3_000)
    >>> h.extract_output_values()
    [1, 3]
    >>> h.close()
    """

    def _register(self, ctx: TriggerContext, timestamp: int) -> None:
        ctx.register_processing_time_timer(timestamp)

    def _delete(self, ctx: TriggerContext, timestamp: int) -> None:
        ctx.delete_processing_time_timer(timestamp)

    def on_element(
        self, element: Any, timestamp: int | None, window: Any, ctx: TriggerContext
    ) -> TriggerResult:
        fire_time = ctx.get_partitioned_state(self.state)
        if fire_time.get() is None:
            now = ctx.get_current_processing_time()
            self._arm(now - now % self.interval, window, ctx, fire_time)
        return TriggerResult.CONTINUE

    def on_processing_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        return self._fire_if_due(time, window, ctx)


class ProcessingTimeoutTrigger(Trigger):
    """Wraps a trigger and also fires when ``timeout`` of processing time has passed since
    the window's first element (or, with ``reset_timer_on_new_record``, its latest).

    When the nested trigger fires on an element, the timeout is cleared. When a
    timer fires, the result is always a firing (purging if the nested trigger
    purges) and, with ``should_clear_on_timeout``, the trigger's state (and the
    nested trigger's) is cleared, as Flink's ``ProcessingTimeoutTrigger`` does.

    >>> from flowactors.windows import CountTrigger, GlobalWindows, PurgingTrigger
    >>> batches = PurgingTrigger.of(ProcessingTimeoutTrigger.of(CountTrigger.of(100), 5_000))
    >>> # .window(GlobalWindows.create()).trigger(batches): 100 elements, or 5 s after the first
    """

    def __init__(
        self,
        nested: Trigger,
        timeout_ms: int,
        reset_timer_on_new_record: bool = False,
        should_clear_on_timeout: bool = True,
    ) -> None:
        if timeout_ms <= 0:
            raise ValueError(f"timeout must be positive, got {timeout_ms} ms")
        self.nested = nested
        self.timeout = timeout_ms
        self.reset_timer_on_new_record = reset_timer_on_new_record
        self.should_clear_on_timeout = should_clear_on_timeout
        self.state: ValueStateDescriptor[int] = ValueStateDescriptor("timeout")

    @classmethod
    def of(
        cls,
        nested: Trigger,
        timeout: timedelta | int,
        reset_timer_on_new_record: bool = False,
        should_clear_on_timeout: bool = True,
    ) -> ProcessingTimeoutTrigger:
        return cls(nested, to_millis(timeout), reset_timer_on_new_record, should_clear_on_timeout)

    def on_element(
        self, element: Any, timestamp: int | None, window: Any, ctx: TriggerContext
    ) -> TriggerResult:
        result = self.nested.on_element(element, timestamp, window, ctx)
        if result.is_fire:
            self.clear(window, ctx)
            return result
        deadline = ctx.get_partitioned_state(self.state)
        pending = deadline.value()
        if pending is not None and self.reset_timer_on_new_record:
            ctx.delete_processing_time_timer(pending)
            pending = None
        if pending is None:
            at = ctx.get_current_processing_time() + self.timeout
            deadline.update(at)
            ctx.register_processing_time_timer(at)
        return result

    def _timed_out(self, result: TriggerResult, window: Any, ctx: TriggerContext) -> TriggerResult:
        if self.should_clear_on_timeout:
            self.clear(window, ctx)
        return TriggerResult.FIRE_AND_PURGE if result.is_purge else TriggerResult.FIRE

    def on_processing_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        return self._timed_out(self.nested.on_processing_time(time, window, ctx), window, ctx)

    def on_event_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        return self._timed_out(self.nested.on_event_time(time, window, ctx), window, ctx)

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        deadline = ctx.get_partitioned_state(self.state)
        pending = deadline.value()
        if pending is not None:
            ctx.delete_processing_time_timer(pending)
            deadline.clear()
        self.nested.clear(window, ctx)


class EndOfStreamTrigger(Trigger):
    """Fires once, at the end of a bounded input (the final watermark reaches the window's
    end); the trigger of ``GlobalWindows.create_with_end_of_stream_trigger()``."""

    def on_element(
        self, element: Any, timestamp: int | None, window: Any, ctx: TriggerContext
    ) -> TriggerResult:
        ctx.register_event_time_timer(window.max_timestamp())
        return TriggerResult.CONTINUE

    def on_event_time(self, time: int, window: Any, ctx: TriggerContext) -> TriggerResult:
        return TriggerResult.FIRE if time == window.max_timestamp() else TriggerResult.CONTINUE

    def clear(self, window: Any, ctx: TriggerContext) -> None:
        ctx.delete_event_time_timer(window.max_timestamp())


class NeverTrigger(Trigger):
    """The default of ``GlobalWindows``: never fires (set a trigger with ``.trigger(...)``)."""

    def on_element(
        self, element: Any, timestamp: int | None, window: Any, ctx: TriggerContext
    ) -> TriggerResult:
        return TriggerResult.CONTINUE
