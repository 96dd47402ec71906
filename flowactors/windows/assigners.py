"""Windows and window assigners: which windows an element belongs to."""

from __future__ import annotations

import enum
import random
from abc import ABC, abstractmethod
from collections.abc import Callable
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


class WindowStagger(enum.Enum):
    """How tumbling processing-time windows of different subtasks are shifted against
    each other, so that they do not all fire at the same instant.

    * ``ALIGNED``: no shift; every subtask's windows start at multiples of the size.
    * ``RANDOM``: each subtask shifts its windows by a random offset in ``[0, size)``.
    * ``NATURAL``: each subtask's windows start when its first element arrives (the
      shift is the processing time of that element modulo the size).

    The shift is drawn once per subtask, on the first element, and added to the
    assigner's offset.
    """

    ALIGNED = "aligned"
    RANDOM = "random"
    NATURAL = "natural"

    def stagger_offset(self, now: int, size: int) -> int:
        """The shift of a subtask whose first element arrives at processing time ``now``."""
        if self is WindowStagger.RANDOM:
            return int(random.random() * size)
        if self is WindowStagger.NATURAL:
            return now % size
        return 0


class TumblingProcessingTimeWindows(TumblingEventTimeWindows):
    """Fixed-size windows on the wall clock of the operator.

    ``stagger`` shifts the windows of each subtask (see :class:`WindowStagger`):

    >>> windows = TumblingProcessingTimeWindows.of(60_000, stagger=WindowStagger.NATURAL)
    >>> windows.assign_windows(None, None, 130_000)  # the first element: windows start at 10 s
    [TimeWindow(start=130000, end=190000)]
    >>> windows.assign_windows(None, None, 200_000)
    [TimeWindow(start=190000, end=250000)]
    """

    is_event_time = False

    def __init__(
        self, size_ms: int, offset_ms: int = 0, stagger: WindowStagger = WindowStagger.ALIGNED
    ) -> None:
        super().__init__(size_ms, offset_ms)
        self.stagger = stagger
        self._stagger_offset: int | None = None

    @classmethod
    def of(
        cls,
        size: timedelta | int,
        offset: timedelta | int = 0,
        stagger: WindowStagger = WindowStagger.ALIGNED,
    ) -> TumblingProcessingTimeWindows:
        return cls(to_millis(size), to_millis(offset), stagger)

    def assign_windows(self, element: Any, timestamp: int | None, now: int) -> list[Any]:
        if self._stagger_offset is None:
            self._stagger_offset = self.stagger.stagger_offset(now, self.size)
        start = window_start(now, (self.offset + self._stagger_offset) % self.size, self.size)
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


def _merge_time_windows(windows: list[Any]) -> list[tuple[Any, list[Any]]]:
    groups: list[tuple[TimeWindow, list[TimeWindow]]] = []
    for window in sorted(windows):
        if groups and groups[-1][0].intersects(window):
            merged, members = groups[-1]
            groups[-1] = (merged.cover(window), [*members, window])
        else:
            groups.append((window, [window]))
    return groups


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

    @staticmethod
    def with_dynamic_gap(extractor: GapExtractor) -> DynamicEventTimeSessionWindows:
        """Sessions whose gap each element sets: ``extractor(element)`` (ms or timedelta).

        >>> sessions = EventTimeSessionWindows.with_dynamic_gap(lambda e: e["idle_ms"])
        >>> sessions.assign_windows({"idle_ms": 500}, 1_000, 0)
        [TimeWindow(start=1000, end=1500)]
        """
        return DynamicEventTimeSessionWindows(extractor)

    def assign_windows(self, element: Any, timestamp: int | None, now: int) -> list[Any]:
        ts = _needs_timestamp(timestamp, type(self).__name__)
        return [TimeWindow(ts, ts + self.gap)]

    def merge_windows(self, windows: list[Any]) -> list[tuple[Any, list[Any]]]:
        return _merge_time_windows(windows)

    def default_trigger(self) -> Any:
        from flowactors.windows.triggers import EventTimeTrigger

        return EventTimeTrigger()


class ProcessingTimeSessionWindows(EventTimeSessionWindows):
    is_event_time = False

    @staticmethod
    def with_dynamic_gap(extractor: GapExtractor) -> DynamicProcessingTimeSessionWindows:
        """Processing-time sessions whose gap each element sets (see the event-time one)."""
        return DynamicProcessingTimeSessionWindows(extractor)

    def assign_windows(self, element: Any, timestamp: int | None, now: int) -> list[Any]:
        return [TimeWindow(now, now + self.gap)]

    def default_trigger(self) -> Any:
        from flowactors.windows.triggers import ProcessingTimeTrigger

        return ProcessingTimeTrigger()


#: ``extractor(element)``: the session gap an element sets, in ms or as a timedelta
#: (or an object with ``extract(element)``, Flink's ``SessionWindowTimeGapExtractor``).
GapExtractor = Callable[[Any], "int | timedelta"] | Any


class DynamicEventTimeSessionWindows(WindowAssigner):
    """Event-time sessions whose gap comes from each element (``with_dynamic_gap``)."""

    merging = True

    def __init__(self, extractor: GapExtractor) -> None:
        self.extract = getattr(extractor, "extract", extractor)

    def _gap(self, element: Any) -> int:
        gap = to_millis(self.extract(element))
        if gap <= 0:
            raise ValueError(f"a dynamic session gap must be positive, got {gap} ms")
        return gap

    def assign_windows(self, element: Any, timestamp: int | None, now: int) -> list[Any]:
        ts = _needs_timestamp(timestamp, "EventTimeSessionWindows.with_dynamic_gap")
        return [TimeWindow(ts, ts + self._gap(element))]

    def merge_windows(self, windows: list[Any]) -> list[tuple[Any, list[Any]]]:
        return _merge_time_windows(windows)

    def default_trigger(self) -> Any:
        from flowactors.windows.triggers import EventTimeTrigger

        return EventTimeTrigger()


class DynamicProcessingTimeSessionWindows(DynamicEventTimeSessionWindows):
    """Processing-time sessions whose gap comes from each element (``with_dynamic_gap``)."""

    is_event_time = False

    def assign_windows(self, element: Any, timestamp: int | None, now: int) -> list[Any]:
        return [TimeWindow(now, now + self._gap(element))]

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
