"""Watermark strategies: how event timestamps are read and watermarks generated.

A :class:`WatermarkStrategy` builds a timestamp assigner and, per source split
(or per subtask for ``assign_timestamps_and_watermarks``), a
:class:`WatermarkGenerator`. Generators see every event (``on_event``; built-in
ones look at a whole batch at once) and are asked every
``auto_watermark_interval`` to emit (``on_periodic_emit``); punctuated
generators emit from ``on_event``.

>>> from datetime import timedelta
>>> strategy = (WatermarkStrategy.for_bounded_out_of_orderness(timedelta(seconds=5))
...             .with_timestamp_assigner(lambda event, ts: event["time"])
...             .with_idleness(timedelta(minutes=1)))
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Generic, TypeVar

from flowactors.time import MIN_WATERMARK, to_millis

T = TypeVar("T")


class WatermarkOutput:
    """Where a generator emits: ``emit_watermark(ts)``, ``mark_idle()``, ``mark_active()``.

    Keeps the largest watermark emitted (a watermark never goes back) and
    whether the split is idle.
    """

    __slots__ = ("changed", "idle", "version", "watermark")

    def __init__(self) -> None:
        self.watermark = MIN_WATERMARK
        self.idle = False
        #: Something changed since the runtime last looked.
        self.changed = False
        #: Counts changes, so the runtime can tell which event caused one.
        self.version = 0

    def _touch(self) -> None:
        self.changed = True
        self.version += 1

    def emit_watermark(self, timestamp: int) -> None:
        if timestamp > self.watermark:
            self.watermark = timestamp
            self._touch()
        if self.idle:
            self.idle = False
            self._touch()

    def mark_idle(self) -> None:
        if not self.idle:
            self.idle = True
            self._touch()

    def mark_active(self) -> None:
        if self.idle:
            self.idle = False
            self._touch()


class WatermarkGenerator(ABC, Generic[T]):
    """Decides when event time has advanced. Subclass for custom watermarks.

    A watermark emitted from ``on_event`` (a punctuated generator) takes effect
    right after that event, before the next one. Generators that only emit in
    ``on_periodic_emit`` may say so with ``emits_on_event = False`` and override
    ``on_batch`` to look at a whole batch at once, as the built-in ones do.
    """

    #: Whether ``on_event`` may emit (then it is called event by event).
    emits_on_event = True

    @abstractmethod
    def on_event(self, event: T, timestamp: int, output: WatermarkOutput) -> None:
        """Called for every event (a punctuated generator may emit here)."""

    @abstractmethod
    def on_periodic_emit(self, output: WatermarkOutput) -> None:
        """Called every auto-watermark interval (a periodic generator emits here)."""

    def on_batch(
        self, events: list[T], timestamps: list[int | None], output: WatermarkOutput
    ) -> None:
        """All events of a batch; override when one look at the batch is enough."""
        on_event = self.on_event
        for event, ts in zip(events, timestamps):
            if ts is not None:
                on_event(event, ts, output)


class BoundedOutOfOrdernessWatermarks(WatermarkGenerator[Any]):
    """Watermark = largest timestamp seen - bound - 1 (as in Flink)."""

    emits_on_event = False

    def __init__(self, bound_ms: int) -> None:
        if bound_ms < 0:
            raise ValueError(f"out-of-orderness bound must be >= 0, got {bound_ms} ms")
        self.bound = bound_ms
        self.max_timestamp = MIN_WATERMARK + bound_ms + 1

    def on_event(self, event: Any, timestamp: int, output: WatermarkOutput) -> None:
        if timestamp > self.max_timestamp:
            self.max_timestamp = timestamp

    def on_batch(
        self, events: list[Any], timestamps: list[int | None], output: WatermarkOutput
    ) -> None:
        present: list[int] = (
            [t for t in timestamps if t is not None] if None in timestamps else timestamps  # type: ignore[assignment]
        )
        if present:
            top = max(present)
            if top > self.max_timestamp:
                self.max_timestamp = top

    def on_periodic_emit(self, output: WatermarkOutput) -> None:
        output.emit_watermark(self.max_timestamp - self.bound - 1)


class AscendingTimestampsWatermarks(BoundedOutOfOrdernessWatermarks):
    """For timestamps that never decrease (Flink's monotonous timestamps)."""

    def __init__(self) -> None:
        super().__init__(0)


class NoWatermarksGenerator(WatermarkGenerator[Any]):
    emits_on_event = False

    def on_event(self, event: Any, timestamp: int, output: WatermarkOutput) -> None:
        pass

    def on_batch(
        self, events: list[Any], timestamps: list[int | None], output: WatermarkOutput
    ) -> None:
        pass

    def on_periodic_emit(self, output: WatermarkOutput) -> None:
        pass


class IdlenessGenerator(WatermarkGenerator[Any]):
    """Wraps a generator: marks its split idle after ``timeout_ms`` of processing time
    without events, active again on the next event."""

    def __init__(self, inner: WatermarkGenerator[Any], timeout_ms: int, clock: Callable[[], int]):
        self.inner = inner
        self.emits_on_event = inner.emits_on_event
        self.timeout = timeout_ms
        self.clock = clock
        self.last_activity = clock()
        self.active_since_periodic = True

    def on_event(self, event: Any, timestamp: int, output: WatermarkOutput) -> None:
        self.inner.on_event(event, timestamp, output)
        self._activity(output)

    def on_batch(
        self, events: list[Any], timestamps: list[int | None], output: WatermarkOutput
    ) -> None:
        self.inner.on_batch(events, timestamps, output)
        if events:
            self._activity(output)

    def _activity(self, output: WatermarkOutput) -> None:
        self.active_since_periodic = True
        output.mark_active()

    def on_periodic_emit(self, output: WatermarkOutput) -> None:
        now = self.clock()
        if self.active_since_periodic:
            self.active_since_periodic = False
            self.last_activity = now
            self.inner.on_periodic_emit(output)
        elif now - self.last_activity >= self.timeout:
            output.mark_idle()
        else:
            self.inner.on_periodic_emit(output)


class WatermarkStrategy(Generic[T]):
    """How to read event timestamps and generate watermarks (immutable; methods return copies)."""

    def __init__(
        self,
        generator_factory: Callable[[Any], WatermarkGenerator[T]],
        timestamp_assigner: Callable[[T, int | None], int] | None = None,
        idle_timeout_ms: int | None = None,
    ) -> None:
        self._factory = generator_factory
        self.timestamp_assigner = timestamp_assigner
        self.idle_timeout_ms = idle_timeout_ms

    @staticmethod
    def for_monotonous_timestamps() -> WatermarkStrategy[Any]:
        return WatermarkStrategy(lambda ctx: AscendingTimestampsWatermarks())

    @staticmethod
    def for_bounded_out_of_orderness(
        max_out_of_orderness: timedelta | int,
    ) -> WatermarkStrategy[Any]:
        bound = to_millis(max_out_of_orderness)
        BoundedOutOfOrdernessWatermarks(bound)  # validate now, not when the job starts
        return WatermarkStrategy(lambda ctx: BoundedOutOfOrdernessWatermarks(bound))

    @staticmethod
    def for_generator(factory: Callable[[Any], WatermarkGenerator[Any]]) -> WatermarkStrategy[Any]:
        """``factory(ctx)`` makes a generator for each split (``ctx`` is reserved)."""
        return WatermarkStrategy(factory)

    @staticmethod
    def no_watermarks() -> WatermarkStrategy[Any]:
        return WatermarkStrategy(lambda ctx: NoWatermarksGenerator())

    def with_timestamp_assigner(
        self, assigner: Callable[[T, int | None], int] | Any
    ) -> WatermarkStrategy[T]:
        """``assigner(event, record_timestamp) -> int`` ms; a ``TimestampAssigner``-like
        object with ``extract_timestamp`` works too."""
        fn = getattr(assigner, "extract_timestamp", assigner)
        return WatermarkStrategy(self._factory, fn, self.idle_timeout_ms)

    def with_idleness(self, idle_timeout: timedelta | int) -> WatermarkStrategy[T]:
        """Mark a split idle when it had no events for ``idle_timeout`` (processing time)."""
        timeout = to_millis(idle_timeout)
        if timeout <= 0:
            raise ValueError(f"idle timeout must be positive, got {timeout} ms")
        return WatermarkStrategy(self._factory, self.timestamp_assigner, timeout)

    def create_watermark_generator(self, clock: Callable[[], int]) -> WatermarkGenerator[T]:
        generator = self._factory(None)
        if self.idle_timeout_ms is not None:
            return IdlenessGenerator(generator, self.idle_timeout_ms, clock)
        return generator
