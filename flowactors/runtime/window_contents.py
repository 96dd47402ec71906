"""What a window holds: the contents strategies of the window operator.

A window's contents are one entry of a keyed-state table keyed by
``(key, window)``. What the entry is, how an element joins it, how two
entries merge (session windows) and what the window function is given when
the window fires depend on the function the user chose. That choice is made
once, when the operator is built, by picking one strategy:

* :class:`ReduceContents`: the running value of a reduce function;
* :class:`AggregateContents`: the accumulator of an ``AggregateFunction``;
* :class:`ListContents`: every element, for a ``ProcessWindowFunction``;
* :class:`EvictingContents`: every element with its timestamp, for any window
  with an evictor (wrapping one of the above, which summarizes what the
  evictor leaves).

Invariant (copy-on-write): while a snapshot is in flight
(``backend.snapshots_in_flight``) the snapshot holds references to the stored
entries, so no strategy mutates a stored entry in place then; it stores a
changed copy instead.

Reduce and aggregate contents are *incremental*: ``fold`` adds one element to
an existing entry without awaiting, which is what the tumbling fast path of
the operator calls inline (``value_first`` says the argument order, so the
user's function is called directly, without a wrapper frame).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from flowactors.runtime.operators import is_async_callable
from flowactors.windows.evictors import Evictor, EvictorContext, TimestampedValue

_MISSING: Any = object()


class WindowContents(ABC):
    """How elements are kept in a window, merged, and handed to the window function."""

    #: The user function whose ``open``/``close`` the operator calls (if any).
    function: Any = None
    #: ``add`` or ``merge`` await the user's function.
    is_async = False
    #: ``first`` / ``fold`` may be called inline by the tumbling fast path.
    incremental = False
    #: ``fold(value, acc)`` rather than ``fold(acc, value)``.
    value_first = False
    #: ``fold`` may mutate the entry in place: copy it first while a snapshot is in flight.
    copies_on_snapshot = False
    fold: Callable[[Any, Any], Any]

    def open(self, backend: Any) -> None:
        """Called once the user function is open; ``backend`` is the keyed state backend."""
        self.backend = backend

    @abstractmethod
    async def add(
        self, table: Any, slot: tuple[Any, Any], value: Any, timestamp: int | None
    ) -> None:
        """Add ``value`` to the entry at ``slot`` (creating it)."""

    @abstractmethod
    async def merge(self, a: Any, b: Any) -> Any:
        """The entry of a window that replaces windows with entries ``a`` and ``b``."""

    @abstractmethod
    def window_input(self, entry: Any) -> list[Any]:
        """What the window function (or the output) gets for a stored entry."""

    @abstractmethod
    async def summarize(self, values: list[Any]) -> list[Any]:
        """What the window function gets for these element values (windows with evictors)."""

    def first(self, value: Any) -> Any:
        """The entry of a window whose first element is ``value`` (incremental only)."""
        raise NotImplementedError

    def _append(self, table: Any, slot: tuple[Any, Any], item: Any) -> None:
        """Append to the list kept for ``slot`` (copied first while a snapshot holds it)."""
        items = table.get(slot)
        if items is None:
            table[slot] = [item]
        elif self.backend.snapshots_in_flight:
            table[slot] = [*items, item]
        else:
            items.append(item)
            table[slot] = items  # a no-op in memory; stores it on disk


class ReduceContents(WindowContents):
    """The running value: ``reduce(acc, value)`` per element (``async def`` allowed)."""

    incremental = True

    def __init__(self, fn: Any) -> None:
        self.function = fn

    def open(self, backend: Any) -> None:
        super().open(backend)
        self.fold = getattr(self.function, "reduce", self.function)
        self.is_async = is_async_callable(self.fold)

    async def add(
        self, table: Any, slot: tuple[Any, Any], value: Any, timestamp: int | None
    ) -> None:
        acc = table.get(slot, _MISSING)
        if acc is _MISSING:
            table[slot] = value
        else:
            r = self.fold(acc, value)
            table[slot] = await r if self.is_async else r

    async def merge(self, a: Any, b: Any) -> Any:
        r = self.fold(a, b)
        return await r if self.is_async else r

    def first(self, value: Any) -> Any:
        return value

    def window_input(self, entry: Any) -> list[Any]:
        return [entry]

    async def summarize(self, values: list[Any]) -> list[Any]:
        if not values:
            return []
        acc = values[0]
        for value in values[1:]:
            acc = await self.merge(acc, value)
        return [acc]


class AggregateContents(WindowContents):
    """The accumulator of an ``AggregateFunction`` (``add``, ``merge``, ``get_result``)."""

    incremental = True
    value_first = True
    copies_on_snapshot = True

    def __init__(self, fn: Any) -> None:
        self.function = fn
        self.fold = fn.add

    async def add(
        self, table: Any, slot: tuple[Any, Any], value: Any, timestamp: int | None
    ) -> None:
        acc = table.get(slot, _MISSING)
        if acc is _MISSING:
            acc = self.function.create_accumulator()
        elif self.backend.snapshots_in_flight:
            acc = copy.copy(acc)  # a snapshot may still hold this one
        table[slot] = self.fold(value, acc)

    async def merge(self, a: Any, b: Any) -> Any:
        return self.function.merge(a, b)

    def first(self, value: Any) -> Any:
        return self.fold(value, self.function.create_accumulator())

    def window_input(self, entry: Any) -> list[Any]:
        return [self.function.get_result(entry)]

    async def summarize(self, values: list[Any]) -> list[Any]:
        acc = self.function.create_accumulator()
        for value in values:
            acc = self.fold(value, acc)
        return [self.function.get_result(acc)]


class ListContents(WindowContents):
    """Every element, in arrival order (merged windows: concatenated)."""

    async def add(
        self, table: Any, slot: tuple[Any, Any], value: Any, timestamp: int | None
    ) -> None:
        self._append(table, slot, value)

    async def merge(self, a: Any, b: Any) -> Any:
        return a + b

    def window_input(self, entry: Any) -> list[Any]:
        return list(entry)

    async def summarize(self, values: list[Any]) -> list[Any]:
        return values


class EvictingContents(WindowContents):
    """Every element with its timestamp, for a window with an evictor.

    The evictor sees the elements when the window fires; ``inner`` (the
    strategy the function alone would use) turns what remains into the window
    function's input, as Flink's ``EvictingWindowOperator`` does.
    """

    def __init__(self, inner: WindowContents, evictor: Evictor) -> None:
        self.inner = inner
        self.evictor = evictor
        self.function = inner.function

    def open(self, backend: Any) -> None:
        super().open(backend)
        self.inner.open(backend)
        self.is_async = self.inner.is_async

    async def add(
        self, table: Any, slot: tuple[Any, Any], value: Any, timestamp: int | None
    ) -> None:
        self._append(table, slot, TimestampedValue(value, timestamp))

    async def merge(self, a: Any, b: Any) -> Any:
        return a + b

    def window_input(self, entry: Any) -> list[Any]:
        return [record.value for record in entry]

    async def summarize(self, values: list[Any]) -> list[Any]:
        return await self.inner.summarize(values)

    def evict_before(
        self, table: Any, slot: tuple[Any, Any], window: Any, ctx: EvictorContext
    ) -> list[TimestampedValue] | None:
        """The window's elements after ``evict_before`` (a new list), or None if it has none."""
        stored = table.get(slot)
        if stored is None:
            return None
        records = list(stored)  # never the stored list: a snapshot may hold it
        self.evictor.evict_before(records, len(records), window, ctx)
        return records

    def evict_after(
        self,
        table: Any,
        slot: tuple[Any, Any],
        records: list[TimestampedValue],
        window: Any,
        ctx: EvictorContext,
    ) -> None:
        """Run ``evict_after`` and keep what remains as the window's elements."""
        self.evictor.evict_after(records, len(records), window, ctx)
        if records:
            table[slot] = records
        else:
            table.pop(slot, None)
