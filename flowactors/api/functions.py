"""Base classes for user functions.

Plain callables serve wherever a function needs no setup or state; subclass
these when it does. Every class has ``open(ctx)`` and ``close()``, called once
per parallel subtask; each subtask works on its own copy of the function
object (as in Flink, where functions are serialised to each task), so keep
handles to shared services out of ``__init__`` and create them in ``open``.
Any of the methods may be ``async def``.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar

from flowactors.api.contexts import (
    Collector,
    Context,
    JoinContext,
    KeyedContext,
    OnTimerContext,
    ProcessWindowContext,
)
from flowactors.errors import InvalidGraphError
from flowactors.runtime.context import RuntimeContext

#: What a user method returns: nothing, or an awaitable (``async def``) the runtime awaits.
MaybeAwaitable = Awaitable[None] | None

IN = TypeVar("IN")
OUT = TypeVar("OUT")
K = TypeVar("K")
ACC = TypeVar("ACC")
IN2 = TypeVar("IN2")
T = TypeVar("T")


def per_subtask(fn: T) -> Callable[[], T]:
    """A factory of copies of ``fn``: each subtask gets its own (as Flink serialises a
    function to every task). Refuses at once a function that cannot be copied."""
    try:
        copy.deepcopy(fn)
    except Exception as exc:
        raise InvalidGraphError(
            f"the function {fn!r:.100} cannot be copied for each parallel subtask ({exc}); "
            "create unpicklable resources (connections, locks) in open() instead of __init__"
        ) from exc
    return lambda: copy.deepcopy(fn)


class Function:
    """Lifecycle shared by all function classes."""

    def open(self, ctx: RuntimeContext) -> MaybeAwaitable:
        """Called once per subtask before the first record (may be ``async def``)."""

    def close(self) -> MaybeAwaitable:
        """Called once per subtask at the end, also after a failure (may be ``async def``)."""


class MapFunction(Function, ABC, Generic[IN, OUT]):
    @abstractmethod
    def map(self, value: IN) -> OUT: ...


class FlatMapFunction(Function, ABC, Generic[IN, OUT]):
    @abstractmethod
    def flat_map(self, value: IN) -> Iterable[OUT]: ...


class FilterFunction(Function, ABC, Generic[IN]):
    @abstractmethod
    def filter(self, value: IN) -> bool: ...


class ReduceFunction(Function, ABC, Generic[T]):
    @abstractmethod
    def reduce(self, a: T, b: T) -> T: ...


class ProcessFunction(Function, ABC, Generic[IN, OUT]):
    """Per record with a context: ``ctx.timestamp()``, ``ctx.output(tag, v)``; emit with ``out``."""

    @abstractmethod
    def process_element(self, value: IN, ctx: Context, out: Collector[OUT]) -> MaybeAwaitable: ...


class KeyedProcessFunction(Function, ABC, Generic[K, IN, OUT]):
    """Per record of a keyed stream, with keyed state and timers.

    ``ctx.timer_service().register_event_time_timer(ts)`` schedules
    ``on_timer(ts, ctx, out)`` for the current key; ``ctx.get_current_key()``,
    ``ctx.timestamp()``, ``ctx.output(tag, value)`` and, in ``on_timer``,
    ``ctx.time_domain()`` are available.
    """

    @abstractmethod
    def process_element(
        self, value: IN, ctx: KeyedContext[K], out: Collector[OUT]
    ) -> MaybeAwaitable: ...

    def on_timer(
        self, timestamp: int, ctx: OnTimerContext[K], out: Collector[OUT]
    ) -> MaybeAwaitable:
        """A timer registered for the current key fired (may be ``async def``)."""


class AggregateFunction(Function, ABC, Generic[IN, ACC, OUT]):
    """Incremental aggregation: ``add`` folds an element into an accumulator."""

    @abstractmethod
    def create_accumulator(self) -> ACC: ...

    @abstractmethod
    def add(self, value: IN, accumulator: ACC) -> ACC: ...

    @abstractmethod
    def get_result(self, accumulator: ACC) -> OUT: ...

    def merge(self, a: ACC, b: ACC) -> ACC:
        """Combine two accumulators (needed by session windows)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement merge()")


class ProcessWindowFunction(Function, ABC, Generic[IN, OUT, K]):
    """All of a window's elements (or its pre-aggregated result) at once.

    ``context.window``, ``context.current_watermark()``,
    ``context.window_state()`` (state of this key and window),
    ``context.global_state()`` (state of this key), ``context.output(tag, v)``.
    """

    @abstractmethod
    def process(
        self,
        key: K,
        context: ProcessWindowContext[Any],
        elements: Iterable[IN],
        out: Collector[OUT],
    ) -> MaybeAwaitable: ...

    def clear(self, context: ProcessWindowContext[Any]) -> MaybeAwaitable:
        """The window is being dropped: clear what ``window_state()`` holds."""


class ProcessAllWindowFunction(Function, ABC, Generic[IN, OUT]):
    """``ProcessWindowFunction`` for ``window_all`` (there is no key)."""

    @abstractmethod
    def process(
        self, context: ProcessWindowContext[Any], elements: Iterable[IN], out: Collector[OUT]
    ) -> MaybeAwaitable: ...

    def clear(self, context: ProcessWindowContext[Any]) -> MaybeAwaitable:
        """The window is being dropped."""


class CoMapFunction(Function, ABC, Generic[IN, IN2, OUT]):
    @abstractmethod
    def map1(self, value: IN) -> OUT: ...

    @abstractmethod
    def map2(self, value: IN2) -> OUT: ...


class CoFlatMapFunction(Function, ABC, Generic[IN, IN2, OUT]):
    """Two inputs, one output; on connected keyed streams it may use keyed state."""

    @abstractmethod
    def flat_map1(self, value: IN, out: Collector[OUT]) -> MaybeAwaitable: ...

    @abstractmethod
    def flat_map2(self, value: IN2, out: Collector[OUT]) -> MaybeAwaitable: ...


class CoProcessFunction(Function, ABC, Generic[IN, IN2, OUT]):
    """Two inputs with a context (``ctx.timestamp()``, ``ctx.output``)."""

    @abstractmethod
    def process_element1(self, value: IN, ctx: Context, out: Collector[OUT]) -> MaybeAwaitable: ...

    @abstractmethod
    def process_element2(self, value: IN2, ctx: Context, out: Collector[OUT]) -> MaybeAwaitable: ...


class KeyedCoProcessFunction(Function, ABC, Generic[K, IN, IN2, OUT]):
    """Two keyed inputs with keyed state and timers (as ``KeyedProcessFunction``)."""

    @abstractmethod
    def process_element1(
        self, value: IN, ctx: KeyedContext[K], out: Collector[OUT]
    ) -> MaybeAwaitable: ...

    @abstractmethod
    def process_element2(
        self, value: IN2, ctx: KeyedContext[K], out: Collector[OUT]
    ) -> MaybeAwaitable: ...

    def on_timer(
        self, timestamp: int, ctx: OnTimerContext[K], out: Collector[OUT]
    ) -> MaybeAwaitable:
        """A timer registered for the current key fired."""


class ProcessJoinFunction(Function, ABC, Generic[IN, IN2, OUT]):
    """Called for every pair of an interval join: ``ctx.left_timestamp()`` etc."""

    @abstractmethod
    def process_element(
        self, left: IN, right: IN2, ctx: JoinContext, out: Collector[OUT]
    ) -> MaybeAwaitable: ...


__all__ = [
    "ProcessWindowFunction",
    "ProcessJoinFunction",
    "ProcessAllWindowFunction",
    "KeyedCoProcessFunction",
    "CoProcessFunction",
    "CoMapFunction",
    "CoFlatMapFunction",
    "AggregateFunction",
    "KeyedProcessFunction",
    "FilterFunction",
    "FlatMapFunction",
    "Function",
    "MapFunction",
    "ProcessFunction",
    "ReduceFunction",
]
