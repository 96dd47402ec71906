"""Operators driven through flowactors.testing: timers, windows, TTL, without a job."""

from __future__ import annotations

from typing import Any

import pytest

from flowactors import (
    KeyedCoProcessFunction,
    KeyedProcessFunction,
    OutputTag,
    ProcessFunction,
    RuntimeContext,
    StateTtlConfig,
    TimeDomain,
    ValueStateDescriptor,
)
from flowactors.testing import (
    KeyedOneInputStreamOperatorTestHarness,
    KeyedTwoInputStreamOperatorTestHarness,
    OneInputStreamOperatorTestHarness,
    StreamRecord,
    Watermark,
    WindowOperatorTestHarness,
)
from flowactors.windows import (
    CountTrigger,
    EventTimeSessionWindows,
    GlobalWindows,
    TumblingEventTimeWindows,
)
from tests.support.functions import Average


class Timeout(KeyedProcessFunction[str, tuple[str, int], str]):
    """Emits '<key>:timeout@<t>' unless a second event for the key comes within 10 ms."""

    def open(self, ctx: RuntimeContext) -> None:
        self.deadline = ctx.get_state(ValueStateDescriptor[int]("deadline"))

    def process_element(self, value: tuple[str, int], ctx: Any, out: Any) -> None:
        deadline = self.deadline.value()
        if deadline is None:
            deadline = ctx.timestamp() + 10
            self.deadline.update(deadline)
            ctx.timer_service().register_event_time_timer(deadline)
            ctx.timer_service().register_event_time_timer(deadline)  # deduplicated
        else:
            ctx.timer_service().delete_event_time_timer(deadline)
            self.deadline.clear()
            out.collect(f"{ctx.get_current_key()}:pair")

    def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
        assert ctx.time_domain() is TimeDomain.EVENT_TIME
        out.collect(f"{ctx.get_current_key()}:timeout@{timestamp}")
        self.deadline.clear()


def test_event_time_timers_fire_with_the_watermark() -> None:
    with KeyedOneInputStreamOperatorTestHarness(Timeout(), key_selector=lambda v: v[0]) as h:
        h.process_element(("a", 0), 100)
        h.process_element(("b", 0), 103)
        assert h.num_event_time_timers() == 2
        h.process_element(("b", 0), 105)  # pairs up and deletes b's timer
        assert h.num_event_time_timers() == 1
        assert h.num_keyed_state_entries() == 1
        h.process_watermark(109)
        assert h.extract_output_values() == ["b:pair"]
        h.process_watermark(110)
        assert h.get_output() == [
            StreamRecord("b:pair", 105),
            Watermark(109),
            StreamRecord("a:timeout@110", 110),
            Watermark(110),
        ]
        assert h.num_event_time_timers() == 0
        assert h.num_keyed_state_entries() == 0


class Poller(KeyedProcessFunction[str, str, str]):
    def process_element(self, value: str, ctx: Any, out: Any) -> None:
        now = ctx.timer_service().current_processing_time()
        ctx.timer_service().register_processing_time_timer(now + 1000)

    def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
        assert ctx.time_domain() is TimeDomain.PROCESSING_TIME
        assert ctx.timestamp() == timestamp  # as in Flink
        out.collect((ctx.get_current_key(), timestamp))


def test_processing_time_timers_follow_the_manual_clock() -> None:
    with KeyedOneInputStreamOperatorTestHarness(Poller(), lambda v: v, processing_time=5) as h:
        h.process_element("x")
        h.set_processing_time(500)
        h.process_element("y")
        assert h.num_processing_time_timers() == 2
        h.set_processing_time(1004)
        assert h.extract_output_values() == []
        h.set_processing_time(1005)
        assert h.extract_output_values() == [("x", 1005)]
        h.set_processing_time(10_000)
        assert h.extract_output_values() == [("x", 1005), ("y", 1500)]
        # records emitted by processing-time timers carry no event timestamp
        assert [r.timestamp for r in h.extract_output_records()] == [None, None]
        assert h.num_processing_time_timers() == 0


def test_ttl_expires_on_processing_time() -> None:
    class Remember(KeyedProcessFunction[str, str, Any]):
        def open(self, ctx: RuntimeContext) -> None:
            descriptor = ValueStateDescriptor[str]("last")
            descriptor.enable_time_to_live(StateTtlConfig.new_builder(1000).build())
            self.last = ctx.get_state(descriptor)

        def process_element(self, value: str, ctx: Any, out: Any) -> None:
            out.collect(self.last.value())
            self.last.update(value)

    with KeyedOneInputStreamOperatorTestHarness(Remember(), lambda v: v[0]) as h:
        h.process_element("a1")
        h.set_processing_time(999)
        h.process_element("a2")  # 999 ms after the write: still there
        h.set_processing_time(1999)
        h.process_element("a3")  # exactly the TTL after the last write: expired
        assert h.extract_output_values() == [None, "a1", None]


def test_process_function_side_outputs_and_timestamps() -> None:
    errors: OutputTag[str] = OutputTag("errors")

    class Parse(ProcessFunction[str, int]):
        def process_element(self, value: str, ctx: Any, out: Any) -> None:
            if value.isdigit():
                out.collect(int(value))
            else:
                ctx.output(errors, f"bad@{ctx.timestamp()}: {value}")

    with OneInputStreamOperatorTestHarness(Parse()) as h:
        h.process_element("12", 1)
        h.process_element("x", 2)
        h.process_elements(["3", "4"], [3, 4])
        assert h.extract_output_records() == [
            StreamRecord(12, 1),
            StreamRecord(3, 3),
            StreamRecord(4, 4),
        ]
        assert h.get_side_output(errors) == ["bad@2: x"]


def test_tumbling_window_with_lateness_and_late_side_output() -> None:
    late: OutputTag[Any] = OutputTag("late")
    with WindowOperatorTestHarness(
        TumblingEventTimeWindows.of(10),
        key_selector=lambda v: v[0],
        reduce=lambda a, b: (a[0], a[1] + b[1]),
        allowed_lateness=5,
        late_data=late,
    ) as h:
        h.process_element(("k", 1), 0)
        h.process_element(("k", 2), 9)  # window end - 1: still [0, 10)
        h.process_element(("k", 4), 10)  # next window
        assert h.num_event_time_timers() == 4  # end and cleanup timer per window
        h.process_watermark(9)
        assert h.extract_output_records() == [StreamRecord(("k", 3), 9)]
        h.process_element(("k", 10), 3)  # late, within lateness: fires again at once
        assert h.extract_output_records()[-1] == StreamRecord(("k", 13), 9)
        h.process_watermark(14)  # cleanup of [0, 10) at 9 + 5
        h.process_element(("k", 100), 5)  # too late now
        assert h.get_side_output(late) == [("k", 100)]
        h.process_watermark(19)
        assert h.extract_output_values() == [("k", 3), ("k", 13), ("k", 4)]
        h.process_watermark(24)
        assert h.num_keyed_state_entries() == 0
        assert h.num_event_time_timers() == 0


def test_session_windows_merge_out_of_order_arrivals() -> None:
    with WindowOperatorTestHarness(
        EventTimeSessionWindows.with_gap(10),
        key_selector=lambda v: v[0],
        aggregate=Average(),
        window_fn=lambda key, ctx, results, out: out.collect(
            (key, ctx.window.start, ctx.window.end, next(iter(results)))
        ),
    ) as h:
        h.process_element(("s", 10), 0)
        h.process_element(("s", 20), 20)  # a separate session for now: [20, 30)
        assert h.num_keyed_state_entries() == 3  # two windows' contents + the session list
        h.process_element(("s", 30), 10)  # [10, 20) touches both: one session [0, 30)
        assert h.num_keyed_state_entries() == 2
        h.process_watermark(28)
        assert h.extract_output_values() == []
        h.process_watermark(29)
        assert h.extract_output_values() == [("s", 0, 30, 20.0)]
        assert h.num_keyed_state_entries() == 0


def test_count_trigger_on_global_windows() -> None:
    with WindowOperatorTestHarness(
        GlobalWindows.create(),
        key_selector=lambda v: v,
        process=lambda key, ctx, elements, out: out.collect((key, len(list(elements)))),
        trigger=CountTrigger.of(2),
    ) as h:
        for v in ["a", "b", "a", "a", "a"]:
            h.process_element(v)
        # CountTrigger fires without purging: the window keeps all elements
        assert h.extract_output_values() == [("a", 2), ("a", 4)]


class Enrich(KeyedCoProcessFunction[int, tuple[int, str], tuple[int, float], Any]):
    def open(self, ctx: RuntimeContext) -> None:
        self.ride = ctx.get_state(ValueStateDescriptor[Any]("ride"))
        self.fare = ctx.get_state(ValueStateDescriptor[Any]("fare"))

    def process_element1(self, value: Any, ctx: Any, out: Any) -> None:
        fare = self.fare.value()
        if fare is None:
            self.ride.update(value)
        else:
            self.fare.clear()
            out.collect((value, fare))

    def process_element2(self, value: Any, ctx: Any, out: Any) -> None:
        ride = self.ride.value()
        if ride is None:
            self.fare.update(value)
        else:
            self.ride.clear()
            out.collect((ride, value))


def test_two_input_harness_shares_keyed_state() -> None:
    with KeyedTwoInputStreamOperatorTestHarness(Enrich(), lambda r: r[0], lambda f: f[0]) as h:
        h.process_element1((1, "ride-1"))
        h.process_element2((2, 9.5))
        assert h.num_keyed_state_entries() == 2
        h.process_element2((1, 7.0))
        h.process_element1((2, "ride-2"))
        assert h.extract_output_values() == [((1, "ride-1"), (1, 7.0)), ((2, "ride-2"), (2, 9.5))]
        assert h.num_keyed_state_entries() == 0


def test_harness_rejects_counting_timers_of_unkeyed_operators() -> None:
    with OneInputStreamOperatorTestHarness(lambda v, ctx, out: out.collect(v)) as h:
        h.process_element(1)
        assert h.extract_output_values() == [1]
        with pytest.raises(TypeError, match="no keyed state or timers"):
            h.num_event_time_timers()
