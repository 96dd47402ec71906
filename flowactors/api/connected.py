"""``ConnectedStreams`` (``a.connect(b)``) and the interval join (``interval_join``).

Connected streams keep both inputs' types: a function gets one method per
input. When both inputs are keyed (``a.key_by(f).connect(b.key_by(g))`` or
``a.connect(b).key_by(f, g)``), records of both with equal keys meet in the
same subtask and share its keyed state and timers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from flowactors.api.functions import (
    CoFlatMapFunction,
    CoMapFunction,
    CoProcessFunction,
    KeyedCoProcessFunction,
    ProcessJoinFunction,
    per_subtask,
)
from flowactors.errors import InvalidGraphError
from flowactors.runtime.graph import Input, Transformation
from flowactors.runtime.two_input import (
    CO_FLAT_MAP,
    CO_MAP,
    CO_PROCESS,
    CoOperator,
    IntervalJoinOperator,
)
from flowactors.runtime.writer import Partitioning, PartitionSpec
from flowactors.time import to_millis

if TYPE_CHECKING:
    from flowactors.api.datastream import DataStream, KeyedStream
    from flowactors.api.output_tag import OutputTag

T1 = TypeVar("T1")
T2 = TypeVar("T2")
R = TypeVar("R")


def _keyed_inputs(inputs: list[Input], selector: Callable[[Any], Any], index: int) -> list[Input]:
    spec = PartitionSpec(Partitioning.HASH, selector)
    return [Input(i.upstream, spec, i.tag, index) for i in inputs]


class ConnectedStreams(Generic[T1, T2]):
    def __init__(
        self,
        first: DataStream[T1],
        second: DataStream[T2],
        key_selectors: tuple[Callable[[Any], Any], Callable[[Any], Any]] | None = None,
    ) -> None:
        if first._env is not second._env:
            raise InvalidGraphError("connect() needs streams of the same environment")
        self._env = first._env
        self._first = first
        self._second = second
        if key_selectors is None:
            k1 = getattr(first, "key_selector", None)
            k2 = getattr(second, "key_selector", None)
            if k1 is not None and k2 is not None:
                key_selectors = (k1, k2)
            elif (k1 is None) != (k2 is None):
                raise InvalidGraphError(
                    "connect(): either both streams are keyed or neither is; use "
                    "connect(...).key_by(key1, key2) to key both"
                )
        self._keys = key_selectors

    def key_by(
        self, key_selector_1: Callable[[T1], Any], key_selector_2: Callable[[T2], Any]
    ) -> ConnectedStreams[T1, T2]:
        """Partition both inputs by key, so equal keys meet in one subtask."""
        return ConnectedStreams(self._first, self._second, (key_selector_1, key_selector_2))

    def _inputs(self) -> list[Input]:
        first = [Input(i.upstream, i.partition, i.tag, 0) for i in self._first._inputs]
        second = [Input(i.upstream, i.partition, i.tag, 1) for i in self._second._inputs]
        if self._keys is not None:
            first = _keyed_inputs(first, self._keys[0], 0)
            second = _keyed_inputs(second, self._keys[1], 1)
        return first + second

    def _build(self, name: str, factory: Callable[[], Any]) -> DataStream[Any]:
        return self._first._derive(Transformation(name, factory, self._inputs()))

    def process(
        self, fn: CoProcessFunction[T1, T2, R] | KeyedCoProcessFunction[Any, T1, T2, R]
    ) -> DataStream[R]:
        """``CoProcessFunction`` (or ``KeyedCoProcessFunction`` when keyed)."""
        if isinstance(fn, KeyedCoProcessFunction) and self._keys is None:
            raise InvalidGraphError("a KeyedCoProcessFunction needs keyed connected streams")
        make, keys = per_subtask(fn), self._keys
        return self._build("CoProcess", lambda: CoOperator(CO_PROCESS, make(), keys))

    def flat_map(self, fn: CoFlatMapFunction[T1, T2, R]) -> DataStream[R]:
        """``CoFlatMapFunction``: ``flat_map1(value, out)`` / ``flat_map2(value, out)``."""
        make, keys = per_subtask(fn), self._keys
        return self._build("CoFlatMap", lambda: CoOperator(CO_FLAT_MAP, make(), keys))

    @overload
    def map(self, fn1: CoMapFunction[T1, T2, R]) -> DataStream[R]: ...
    @overload
    def map(self, fn1: Callable[[T1], R], fn2: Callable[[T2], R]) -> DataStream[R]: ...
    def map(self, fn1: Any, fn2: Callable[[T2], Any] | None = None) -> DataStream[Any]:
        """``map(CoMapFunction)`` or ``map(fn1, fn2)``: one output per input record."""
        keys = self._keys
        if fn2 is None:
            make = per_subtask(fn1)
            return self._build("CoMap", lambda: CoOperator(CO_MAP, make(), keys))
        fns = (fn1, fn2)
        return self._build("CoMap", lambda: CoOperator(CO_MAP, None, keys, fns))


class IntervalJoin(Generic[T1, T2]):
    """``left.key_by(k1).interval_join(right.key_by(k2)).between(lo, hi).process(fn)``."""

    def __init__(self, left: KeyedStream[Any, T1], right: KeyedStream[Any, T2]) -> None:
        self._left = left
        self._right = right

    def between(self, lower: timedelta | int, upper: timedelta | int) -> IntervalJoined[T1, T2]:
        """Right elements with ``left.ts + lower <= right.ts <= left.ts + upper`` join."""
        lo, hi = to_millis(lower), to_millis(upper)
        if lo > hi:
            raise InvalidGraphError(f"interval_join: lower bound {lo} is above upper bound {hi}")
        return IntervalJoined(self._left, self._right, lo, hi)


class IntervalJoined(Generic[T1, T2]):
    def __init__(
        self, left: KeyedStream[Any, T1], right: KeyedStream[Any, T2], lower: int, upper: int
    ) -> None:
        self._left = left
        self._right = right
        self._lower = lower
        self._upper = upper
        self._lower_inclusive = True
        self._upper_inclusive = True
        self._late_tags: tuple[Any, Any] = (None, None)

    def lower_bound_exclusive(self) -> IntervalJoined[T1, T2]:
        self._lower_inclusive = False
        return self

    def upper_bound_exclusive(self) -> IntervalJoined[T1, T2]:
        self._upper_inclusive = False
        return self

    def side_output_left_late_data(self, tag: OutputTag[T1]) -> IntervalJoined[T1, T2]:
        """Send left elements that arrive behind the watermark to ``tag`` instead of
        dropping them (read them with ``joined.get_side_output(tag)``).

        >>> from flowactors import OutputTag
        >>> late_clicks = OutputTag("late-clicks")
        >>> # joined = (clicks.key_by(user).interval_join(views.key_by(user))
        >>> #           .between(-5_000, 0).side_output_left_late_data(late_clicks)
        >>> #           .process(MatchClicks()))
        >>> # joined.get_side_output(late_clicks): the clicks that came too late to join
        """
        self._late_tags = (tag, self._late_tags[1])
        return self

    def side_output_right_late_data(self, tag: OutputTag[T2]) -> IntervalJoined[T1, T2]:
        """Send right elements that arrive behind the watermark to ``tag`` instead of
        dropping them."""
        self._late_tags = (self._late_tags[0], tag)
        return self

    def process(self, fn: ProcessJoinFunction[T1, T2, R]) -> DataStream[R]:
        """``ProcessJoinFunction.process_element(left, right, ctx, out)`` per pair."""
        if self._lower + (0 if self._lower_inclusive else 1) > self._upper - (
            0 if self._upper_inclusive else 1
        ):
            raise InvalidGraphError("interval_join: the interval is empty")
        keys = (self._left.key_selector, self._right.key_selector)
        inputs = _keyed_inputs(self._left._inputs, keys[0], 0) + _keyed_inputs(
            self._right._inputs, keys[1], 1
        )
        make = per_subtask(fn)
        lo, hi, li, ui = self._lower, self._upper, self._lower_inclusive, self._upper_inclusive
        late = self._late_tags
        t = Transformation(
            "IntervalJoin",
            lambda: IntervalJoinOperator(make(), keys, lo, hi, li, ui, late),
            inputs,
        )
        return self._left._derive(t)
