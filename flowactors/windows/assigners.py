"""Windows and window assigners: which windows an element belongs to."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import timedelta
from typing import Any, NamedTuple

from flowactors.time import MAX_WATERMARK, to_millis


class TimeWindow(NamedTuple):
    """The half-open interval ``[start, end)`` in milliseconds.

    A named tuple, so that hashing one (window contents are keyed by
    ``(key, window)``) stays in C.
    """

    start: int
    end: int

    def max_timestamp(self) -> int:
        """The largest timestamp that still belongs to the window (``end - 1``)."""
        return self.end - 1

    def intersects(self, other: TimeWindow) -> bool:
        return self.start <= other.end and self.end >= other.start

    def cover(self, other: TimeWindow) -> TimeWindow:
        return TimeWindow(min(self.start, other.start), max(self.end, other.end))


class GlobalWindow:
    """The one window of ``GlobalWindows``: it never ends by itself."""

    __slots__ = ()

    def max_timestamp(self) -> int:
        return MAX_WATERMARK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GlobalWindow)

    def __hash__(self) -> int:
        return 0x61_0BA1

    def __repr__(self) -> str:
        return "GlobalWindow()"


GLOBAL_WINDOW = GlobalWindow()


def window_start(timestamp: int, offset: int, size: int) -> int:
    """Start of the window of ``size`` (shifted by ``offset``) that contains ``timestamp``."""
    return timestamp - (timestamp - offset + size) % size


class WindowAssigner(ABC):
    """Assigns elements to windows and names the default trigger."""

    is_event_time = True
    merging = False

    @abstractmethod
    def assign_windows(self, element: Any, timestamp: int | None, now: int) -> list[Any]:
        """The windows of an element (``now`` is the processing time)."""

    @abstractmethod
    def default_trigger(self) -> Any: ...

    def merge_windows(self, windows: list[Any]) -> list[tuple[Any, list[Any]]]:
        """For merging assigners: ``(merged window, windows it replaces)`` groups."""
        raise NotImplementedError


def _needs_timestamp(timestamp: int | None, assigner: str) -> int:
    if timestamp is None:
        raise ValueError(
            f"{assigner} needs event timestamps: the record has none. Use "
            "assign_timestamps_and_watermarks(...) or from_source(..., watermark_strategy), "
            "or a processing-time window"
        )
    return timestamp


class TumblingEventTimeWindows(WindowAssigner):
    """Fixed-size, non-overlapping windows on event time."""

    def __init__(self, size_ms: int, offset_ms: int = 0) -> None:
        if size_ms <= 0:
            raise ValueError(f"window size must be positive, got {size_ms} ms")
        if not 0 <= abs(offset_ms) < size_ms:
            raise ValueError("the window offset must be smaller than the size")
        self.size = size_ms
        self.offset = offset_ms

    @classmethod
    def of(cls, size: timedelta | int, offset: timedelta | int = 0) -> TumblingEventTimeWindows:
        return cls(to_millis(size), to_millis(offset))

    def assign_windows(self, element: Any, timestamp: int | None, now: int) -> list[Any]:
        ts = _needs_timestamp(timestamp, type(self).__name__)
        start = window_start(ts, self.offset, self.size)
        return [TimeWindow(start, start + self.size)]

    def default_trigger(self) -> Any:
        from flowactors.windows.triggers import EventTimeTrigger

        return EventTimeTrigger()


class TumblingProcessingTimeWindows(TumblingEventTimeWindows):
    """Fixed-size windows on the wall clock of the operator."""

    is_event_time = False

    def assign_windows(self, element: Any, timestamp: int | None, now: int) -> list[Any]:
        start = window_start(now, self.offset, self.size)
        return [TimeWindow(start, start + self.size)]

    def default_trigger(self) -> Any:
        from flowactors.windows.triggers import ProcessingTimeTrigger

        return ProcessingTimeTrigger()


class SlidingEventTimeWindows(WindowAssigner):
    """Windows of ``size`` starting every ``slide``: an element is in ``size / slide`` windows."""

    def __init__(self, size_ms: int, slide_ms: int, offset_ms: int = 0) -> None:
        if size_ms <= 0 or slide_ms <= 0:
            raise ValueError("window size and slide must be positive")
        if not 0 <= abs(offset_ms) < slide_ms:
            raise ValueError("the window offset must be smaller than the slide")
        self.size = size_ms
        self.slide = slide_ms
        self.offset = offset_ms

    @classmethod
    def of(
        cls, size: timedelta | int, slide: timedelta | int, offset: timedelta | int = 0
    ) -> SlidingEventTimeWindows:
        return cls(to_millis(size), to_millis(slide), to_millis(offset))

    def _windows(self, ts: int) -> list[Any]:
        last_start = window_start(ts, self.offset, self.slide)
        windows = []
        start = last_start
        while start > ts - self.size:
            windows.append(TimeWindow(start, start + self.size))
            start -= self.slide
        return windows

    def assign_windows(self, element: Any, timestamp: int | None, now: int) -> list[Any]:
        return self._windows(_needs_timestamp(timestamp, type(self).__name__))

    def default_trigger(self) -> Any:
        from flowactors.windows.triggers import EventTimeTrigger

        return EventTimeTrigger()


class SlidingProcessingTimeWindows(SlidingEventTimeWindows):
    is_event_time = False

    def assign_windows(self, element: Any, timestamp: int | None, now: int) -> list[Any]:
        return self._windows(now)

    def default_trigger(self) -> Any:
        from flowactors.windows.triggers import ProcessingTimeTrigger

        return ProcessingTimeTrigger()


class EventTimeSessionWindows(WindowAssigner):
    """Windows that close after ``gap`` without elements; overlapping sessions merge."""

    merging = True

    def __init__(self, gap_ms: int) -> None:
        if gap_ms <= 0:
            raise ValueError(f"session gap must be positive, got {gap_ms} ms")
        self.gap = gap_ms

    @classmethod
    def with_gap(cls, gap: timedelta | int) -> EventTimeSessionWindows:
        return cls(to_millis(gap))

    def assign_windows(self, element: Any, timestamp: int | None, now: int) -> list[Any]:
        ts = _needs_timestamp(timestamp, type(self).__name__)
        return [TimeWindow(ts, ts + self.gap)]

    def merge_windows(self, windows: list[Any]) -> list[tuple[Any, list[Any]]]:
        groups: list[tuple[TimeWindow, list[TimeWindow]]] = []
        for window in sorted(windows):
            if groups and groups[-1][0].intersects(window):
                merged, members = groups[-1]
                groups[-1] = (merged.cover(window), [*members, window])
            else:
                groups.append((window, [window]))
        return groups

    def default_trigger(self) -> Any:
        from flowactors.windows.triggers import EventTimeTrigger

        return EventTimeTrigger()


class ProcessingTimeSessionWindows(EventTimeSessionWindows):
    is_event_time = False

    def assign_windows(self, element: Any, timestamp: int | None, now: int) -> list[Any]:
        return [TimeWindow(now, now + self.gap)]

    def default_trigger(self) -> Any:
        from flowactors.windows.triggers import ProcessingTimeTrigger

        return ProcessingTimeTrigger()


class GlobalWindows(WindowAssigner):
    """One window per key that never ends: needs a trigger (e.g. ``CountTrigger``)."""

    is_event_time = False

    def __init__(self, end_of_stream: bool = False) -> None:
        self.end_of_stream = end_of_stream

    @classmethod
    def create(cls) -> GlobalWindows:
        return cls()

    @classmethod
    def create_with_end_of_stream_trigger(cls) -> GlobalWindows:
        """One window per key that fires once, when a bounded input ends (at the final
        watermark): a keyed "aggregate everything" for batch-style jobs.

        >>> import asyncio
        >>> from flowactors import StreamExecutionEnvironment
        >>> env = StreamExecutionEnvironment()
        >>> totals = (env.from_collection([("a", 1), ("b", 2), ("a", 3)]).key_by(lambda e: e[0])
        ...     .window(GlobalWindows.create_with_end_of_stream_trigger())
        ...     .reduce(lambda x, y: (x[0], x[1] + y[1])))
        >>> sorted(asyncio.run(totals.execute_and_collect()))
        [('a', 4), ('b', 2)]
        """
        return cls(end_of_stream=True)

    def assign_windows(self, element: Any, timestamp: int | None, now: int) -> list[Any]:
        return [GLOBAL_WINDOW]

    def default_trigger(self) -> Any:
        from flowactors.windows.triggers import EndOfStreamTrigger, NeverTrigger

        return EndOfStreamTrigger() if self.end_of_stream else NeverTrigger()
