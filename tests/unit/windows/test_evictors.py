"""Evictors in the window operator (after Flink's EvictingWindowOperatorTest)."""

from __future__ import annotations

from typing import Any

import pytest

from flowactors import AggregateFunction, InvalidGraphError, StreamExecutionEnvironment
from flowactors.testing import StreamRecord, WindowOperatorTestHarness
from flowactors.windows import (
    CountEvictor,
    CountTrigger,
    DeltaEvictor,
    EventTimeSessionWindows,
    Evictor,
    EvictorContext,
    GlobalWindows,
    TimeEvictor,
    TimestampedValue,
    TimeWindow,
    TumblingEventTimeWindows,
)

Pair = tuple[str, int]


def add(a: Pair, b: Pair) -> Pair:
    return (a[0], a[1] + b[1])


class Count(AggregateFunction[Any, int, int]):
    """No merge(): fine for sessions with an evictor, whose windows keep elements."""

    def create_accumulator(self) -> int:
        return 0

    def add(self, value: Any, accumulator: int) -> int:
        return accumulator + 1

    def get_result(self, accumulator: int) -> int:
        return accumulator


def values(key: str, elements: list[Pair], out: Any, ctx: Any = None) -> None:
    out.collect([v for _, v in elements])


class AllValues:
    def process(self, key: str, ctx: Any, elements: list[Pair], out: Any) -> None:
        out.collect([v for _, v in elements])


def every_third(evictor: Evictor, **fn: Any) -> WindowOperatorTestHarness:
    return WindowOperatorTestHarness(
        GlobalWindows.create(),
        lambda v: v[0],
        trigger=CountTrigger.of(3),
        evictor=evictor,
        **fn,
    )


def test_count_evictor_before_keeps_the_last_elements_for_reduce() -> None:
    with every_third(CountEvictor.of(2), reduce=add) as h:
        for v in range(1, 7):
            h.process_element(("a", v))
        # [1, 2, 3] -> [2, 3]; then [2, 3, 4, 5, 6] -> [5, 6]
        assert h.extract_output_values() == [("a", 5), ("a", 11)]
        assert h.num_keyed_state_entries() == 1  # the two kept elements (the count is reset)


def test_count_evictor_after_lets_the_function_see_everything() -> None:
    with every_third(CountEvictor.of(2, do_evict_after=True), process=AllValues()) as h:
        for v in range(1, 7):
            h.process_element(("a", v))
        assert h.extract_output_values() == [[1, 2, 3], [2, 3, 4, 5, 6]]


def test_time_evictor_keeps_elements_within_its_size_of_the_newest() -> None:
    with WindowOperatorTestHarness(
        TumblingEventTimeWindows.of(10),
        lambda v: v[0],
        aggregate=Count(),
        evictor=TimeEvictor.of(4),
    ) as h:
        for ts in (1, 3, 5, 8):
            h.process_element(("a", ts), ts)
        h.process_element(("b", 9), 9)
        h.process_watermark(9)
        # a: newest 8, cutoff 4: 5 and 8 remain; an aggregate over elements, not an accumulator
        assert h.extract_output_records() == [StreamRecord(1 + 1, 9), StreamRecord(1, 9)]
        assert h.num_keyed_state_entries() == 0


def test_delta_evictor_drops_elements_too_far_from_the_newest() -> None:
    class Distance:
        def get_delta(self, old: Pair, new: Pair) -> float:
            return abs(new[1] - old[1])

    with every_third(DeltaEvictor.of(5, Distance()), process=AllValues()) as h:
        for v in (1, 8, 10):
            h.process_element(("a", v))
        assert h.extract_output_values() == [[8, 10]]


def test_custom_evictor_sees_size_window_and_context() -> None:
    calls: list[tuple[str, int, Any, int]] = []

    class Recording(Evictor):
        def evict_before(
            self, elements: list[TimestampedValue], size: int, window: Any, ctx: EvictorContext
        ) -> None:
            calls.append(("before", size, window, ctx.get_current_watermark()))
            elements[:] = [e for e in elements if e.value[1] % 2 == 0]

        def evict_after(
            self, elements: list[TimestampedValue], size: int, window: Any, ctx: EvictorContext
        ) -> None:
            calls.append(("after", size, window, ctx.get_current_watermark()))
            assert [e.timestamp for e in elements] == [2, 4]
            del elements[:]

    with WindowOperatorTestHarness(
        TumblingEventTimeWindows.of(10), lambda v: v[0], process=AllValues(), evictor=Recording()
    ) as h:
        for ts in range(1, 6):
            h.process_element(("a", ts), ts)
        assert h.num_keyed_state_entries() == 1
        h.process_watermark(9)
        assert h.extract_output_values() == [[2, 4]]
        window = TimeWindow(0, 10)
        assert calls == [("before", 5, window, 9), ("after", 2, window, 9)]


def test_evict_after_that_empties_the_window_removes_its_contents() -> None:
    with WindowOperatorTestHarness(
        TumblingEventTimeWindows.of(10),
        lambda v: v[0],
        reduce=add,
        evictor=CountEvictor.of(0, do_evict_after=True),
        allowed_lateness=100,
    ) as h:
        h.process_element(("a", 1), 1)
        h.process_element(("a", 2), 2)
        h.process_watermark(9)
        assert h.extract_output_values() == [("a", 3)]
        assert h.num_keyed_state_entries() == 0
        h.process_element(("a", 4), 3)  # late within the lateness: fires with what is kept
        assert h.extract_output_values() == [("a", 3), ("a", 4)]


def test_session_windows_with_an_evictor_merge_elements() -> None:
    with WindowOperatorTestHarness(
        EventTimeSessionWindows.with_gap(10),
        lambda v: v[0],
        aggregate=Count(),
        evictor=CountEvictor.of(2),
    ) as h:
        for ts in (1, 20, 10):  # the third bridges [1, 11) and [20, 30)
            h.process_element(("a", ts), ts)
        h.process_watermark(100)
        assert h.extract_output_records() == [StreamRecord(2, 29)]


def test_aggregate_without_merge_is_accepted_on_sessions_only_with_an_evictor() -> None:
    env = StreamExecutionEnvironment()
    windowed = env.from_collection([("a", 1)]).key_by(lambda e: e[0])
    with pytest.raises(InvalidGraphError, match="merge"):
        windowed.window(EventTimeSessionWindows.with_gap(10)).aggregate(Count())
    windowed.window(EventTimeSessionWindows.with_gap(10)).evictor(CountEvictor.of(5)).aggregate(
        Count()
    )


def test_evictor_needs_an_evictor() -> None:
    env = StreamExecutionEnvironment()
    windowed = env.from_collection([("a", 1)]).key_by(lambda e: e[0])
    with pytest.raises(InvalidGraphError, match="Evictor"):
        windowed.window(GlobalWindows.create()).evictor(lambda e: e)  # type: ignore[arg-type]
