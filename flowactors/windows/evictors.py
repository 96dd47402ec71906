"""Evictors: remove elements from a window before or after its function runs.

A window with an evictor keeps every element with its timestamp (as
:class:`TimestampedValue`), even for ``reduce`` and ``aggregate``: the evictor
needs the elements, so the function is applied to what remains when the
window fires (Flink's ``EvictingWindowOperator``). ``evict_before`` runs just
before the window function, ``evict_after`` just after it; both receive the
window's elements as a list, oldest first, and remove elements *in place*
(``del elements[:n]``, ``elements[:] = [...]``). What remains after
``evict_after`` is what the window keeps.

>>> from flowactors.windows import CountEvictor, TimestampedValue
>>> elements = [TimestampedValue(v, v * 10) for v in range(5)]
>>> CountEvictor.of(2).evict_before(elements, len(elements), None, None)
>>> [e.value for e in elements]
[3, 4]
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Callable
from datetime import timedelta
from typing import Any, NamedTuple, Protocol

from flowactors.time import to_millis


class TimestampedValue(NamedTuple):
    """A window element with its event timestamp (``None`` if the record had none)."""

    value: Any
    timestamp: int | None


class EvictorContext(Protocol):
    """What an evictor may ask while the window fires."""

    def get_current_processing_time(self) -> int: ...
    def get_current_watermark(self) -> int: ...


class Evictor(ABC):  # noqa: B024 - both hooks are optional
    """Removes elements from a firing window; override either hook (or both).

    >>> class KeepEven(Evictor):
    ...     def evict_before(self, elements, size, window, ctx):
    ...         elements[:] = [e for e in elements if e.value % 2 == 0]
    """

    def evict_before(  # noqa: B027 - an optional hook
        self, elements: list[TimestampedValue], size: int, window: Any, ctx: EvictorContext
    ) -> None:
        """Before the window function: remove elements it should not see."""

    def evict_after(  # noqa: B027 - an optional hook
        self, elements: list[TimestampedValue], size: int, window: Any, ctx: EvictorContext
    ) -> None:
        """After the window function: remove elements the window should no longer keep."""


class _BeforeOrAfter(Evictor):
    def __init__(self, do_evict_after: bool) -> None:
        self.do_evict_after = do_evict_after

    def _evict(self, elements: list[TimestampedValue], size: int) -> None:
        raise NotImplementedError

    def evict_before(
        self, elements: list[TimestampedValue], size: int, window: Any, ctx: EvictorContext
    ) -> None:
        if not self.do_evict_after:
            self._evict(elements, size)

    def evict_after(
        self, elements: list[TimestampedValue], size: int, window: Any, ctx: EvictorContext
    ) -> None:
        if self.do_evict_after:
            self._evict(elements, size)


class CountEvictor(_BeforeOrAfter):
    """Keeps the last ``max_count`` elements of the window.

    >>> from flowactors.windows import GlobalWindows, CountTrigger
    >>> # key_by(...).window(GlobalWindows.create()).trigger(CountTrigger.of(1))
    >>> #     .evictor(CountEvictor.of(3))   # a running window over the last 3 elements
    """

    def __init__(self, max_count: int, do_evict_after: bool = False) -> None:
        if max_count < 0:
            raise ValueError(f"max_count must be >= 0, got {max_count}")
        super().__init__(do_evict_after)
        self.max_count = max_count

    @classmethod
    def of(cls, max_count: int, do_evict_after: bool = False) -> CountEvictor:
        return cls(max_count, do_evict_after)

    def _evict(self, elements: list[TimestampedValue], size: int) -> None:
        if size > self.max_count:
            del elements[: size - self.max_count]


class TimeEvictor(_BeforeOrAfter):
    """Keeps the elements within ``window_size`` of the newest one: removes every element
    whose timestamp is ``<= max timestamp - window_size`` (elements without timestamps
    are kept).

    >>> elements = [TimestampedValue(v, t) for v, t in [("a", 0), ("b", 500), ("c", 1_000)]]
    >>> TimeEvictor.of(500).evict_before(elements, 3, None, None)
    >>> [e.value for e in elements]
    ['c']
    """

    def __init__(self, window_size_ms: int, do_evict_after: bool = False) -> None:
        if window_size_ms < 0:
            raise ValueError(f"window size must be >= 0, got {window_size_ms} ms")
        super().__init__(do_evict_after)
        self.window_size = window_size_ms

    @classmethod
    def of(cls, window_size: timedelta | int, do_evict_after: bool = False) -> TimeEvictor:
        return cls(to_millis(window_size), do_evict_after)

    def _evict(self, elements: list[TimestampedValue], size: int) -> None:
        stamps = [e.timestamp for e in elements if e.timestamp is not None]
        if not stamps:
            return
        cutoff = max(stamps) - self.window_size
        elements[:] = [e for e in elements if e.timestamp is None or e.timestamp > cutoff]


class DeltaEvictor(_BeforeOrAfter):
    """Removes every element whose ``delta_fn(element, newest element)`` is ``>= threshold``.

    ``delta_fn`` is a function of two element values, or an object with
    ``get_delta(old, new)`` (Flink's ``DeltaFunction``).

    >>> elements = [TimestampedValue(v, None) for v in (1, 5, 9, 10)]
    >>> DeltaEvictor.of(4, lambda a, b: abs(b - a)).evict_before(elements, 4, None, None)
    >>> [e.value for e in elements]
    [9, 10]
    """

    def __init__(
        self, threshold: float, delta_fn: Callable[[Any, Any], float] | Any, do_evict_after: bool
    ) -> None:
        super().__init__(do_evict_after)
        self.threshold = threshold
        self.delta = getattr(delta_fn, "get_delta", delta_fn)

    @classmethod
    def of(
        cls,
        threshold: float,
        delta_fn: Callable[[Any, Any], float] | Any,
        do_evict_after: bool = False,
    ) -> DeltaEvictor:
        return cls(threshold, delta_fn, do_evict_after)

    def _evict(self, elements: list[TimestampedValue], size: int) -> None:
        if not elements:
            return
        newest = elements[-1].value
        delta, threshold = self.delta, self.threshold
        elements[:] = [e for e in elements if delta(e.value, newest) < threshold]
