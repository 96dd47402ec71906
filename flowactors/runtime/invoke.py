"""Calling user code: the one way every operator does it.

A user method may be a plain ``def``, an ``async def``, or a plain ``def`` that
returns an awaitable; whichever it is, its work is done before the operator
goes on. These helpers serve every operator:

- :func:`call_per_record` calls a function once per record of a batch, after
  setting the record's scope: its event timestamp on the context and the
  collector (so ``ctx.timestamp()`` and what ``out.collect`` emits carry it)
  and its key on the keyed state backend (so state handles and timers act on
  it). Process functions, keyed function classes and the two-input functions
  go through it.
- :func:`resolve` awaits what one call returned when it is awaitable (timers,
  joined pairs, window functions, ``open``/``close``).

Built-in operators whose whole batch goes through one C-level loop (``map``,
``filter`` on plain callables) use :func:`resolve_batch` on the list of results
instead: it awaits them all when the first one is awaitable. :func:`listed`
turns what a ``flat_map`` returned (an iterable, an async iterable, an
awaitable of an iterable) into a list.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from itertools import repeat
from typing import Any, Protocol

__all__ = ["RecordScope", "call_per_record", "listed", "resolve", "resolve_batch"]


class RecordContext(Protocol):
    """A function's ``ctx``: ``ctx.timestamp()`` answers with the current record's."""

    _timestamp: int | None


class RecordCollector(Protocol):
    """A function's ``out``: what it collects carries the current record's timestamp."""

    timestamp: int | None


class KeyedBackend(Protocol):
    current_key: Any


class RecordScope:
    """What is set before each call: the context, the collector and the keyed backend
    (each optional)."""

    __slots__ = ("backend", "collector", "context")

    def __init__(
        self,
        context: RecordContext | None = None,
        collector: RecordCollector | None = None,
        backend: KeyedBackend | None = None,
    ) -> None:
        self.context = context
        self.collector = collector
        self.backend = backend


async def call_per_record(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    values: list[Any],
    timestamps: list[int | None] | None,
    keys: list[Any] | None,
    scope: RecordScope,
    result: Callable[[Any, Any], None] | None = None,
) -> None:
    """``fn(value, *args)`` for every record, in its scope; ``result(value, returned)``
    after each call when given (the returned value awaited if it is awaitable)."""
    backend, context, collector = scope.backend, scope.context, scope.collector
    isawaitable = inspect.isawaitable
    for v, t, k in zip(
        values,
        repeat(None) if timestamps is None else timestamps,
        repeat(None) if keys is None else keys,
    ):
        if backend is not None:
            backend.current_key = k
        if context is not None:
            context._timestamp = t
        if collector is not None:
            collector.timestamp = t
        r = fn(v, *args)
        if r is not None and isawaitable(r):
            r = await r
        if result is not None:
            result(v, r)


async def resolve(returned: Any) -> Any:
    """``returned``, awaited when it is awaitable."""
    if returned is not None and inspect.isawaitable(returned):
        return await returned
    return returned


async def resolve_batch(results: list[Any]) -> list[Any]:
    """A batch of results of one function: awaited one by one when they are awaitables.

    When one of them raises, the ones not awaited yet are closed (no "never awaited"
    coroutine is left behind) and the error propagates.
    """
    if not results or not inspect.isawaitable(results[0]):
        return results
    done: list[Any] = []
    try:
        for r in results:
            done.append(await r)
    except BaseException:
        for r in results[len(done) + 1 :]:
            close = getattr(r, "close", None)
            if close is not None:
                close()
        raise
    return done


def listed(returned: Any) -> Any:
    """What a ``flat_map`` returned, as a list — or as an awaitable of one when it is an
    async iterable or an awaitable of an iterable."""
    if returned is None:
        return []
    if hasattr(returned, "__aiter__"):
        return _drain(returned)
    if inspect.isawaitable(returned):
        return _awaited_list(returned)
    return returned


async def _drain(items: Any) -> list[Any]:
    return [x async for x in items]


async def _awaited_list(returned: Any) -> list[Any]:
    items = await returned
    return [] if items is None else list(items)
