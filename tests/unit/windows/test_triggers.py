"""ContinuousProcessingTimeTrigger, ProcessingTimeoutTrigger and the end-of-stream trigger,
driven through the window operator with a manual processing-time clock."""

from __future__ import annotations

from flowactors.testing import WindowOperatorTestHarness
from flowactors.windows import (
    ContinuousProcessingTimeTrigger,
    CountTrigger,
    GlobalWindows,
    ProcessingTimeoutTrigger,
    ProcessingTimeSessionWindows,
    PurgingTrigger,
    TimeWindow,
    Trigger,
    TumblingProcessingTimeWindows,
)

Pair = tuple[str, int]


def add(a: Pair, b: Pair) -> Pair:
    return (a[0], a[1] + b[1])


def key(v: Pair) -> str:
    return v[0]


# -- ContinuousProcessingTimeTrigger ---------------------------------------------------


def test_continuous_processing_time_fires_at_aligned_multiples_until_the_end() -> None:
    window = TimeWindow(0, 10)
    with WindowOperatorTestHarness(
        TumblingProcessingTimeWindows.of(10),
        key,
        reduce=add,
        trigger=ContinuousProcessingTimeTrigger.of(4),
        processing_time=1,
    ) as h:
        h.process_element(("a", 1))
        h.set_processing_time(2)
        h.process_element(("a", 2))
        # the next multiple of 4 after 1, and the window's end (its cleanup)
        assert h.num_processing_time_timers(window) == 2
        assert h.num_keyed_state_entries() == 2  # contents and the fire time
        h.set_processing_time(3)
        assert h.extract_output_values() == []
        h.set_processing_time(4)
        assert h.extract_output_values() == [("a", 3)]
        h.process_element(("a", 4))
        h.set_processing_time(9)  # 8, then the end (9), which also cleans up
        assert h.extract_output_values() == [("a", 3), ("a", 7), ("a", 7)]
        assert h.num_processing_time_timers() == 0
        assert h.num_keyed_state_entries() == 0


def test_continuous_processing_time_merges_fire_times_of_sessions() -> None:
    with WindowOperatorTestHarness(
        ProcessingTimeSessionWindows.with_gap(10),
        key,
        reduce=add,
        trigger=ContinuousProcessingTimeTrigger.of(4),
        processing_time=1,
    ) as h:
        h.process_element(("a", 1))  # [1, 11), fires at 4
        h.set_processing_time(3)
        h.process_element(("a", 2))  # [3, 13): merged into [1, 13), still fires at 4
        merged = TimeWindow(1, 13)
        assert h.num_processing_time_timers(merged) == 2  # 4 and the end
        assert h.num_keyed_state_entries() == 3  # contents, fire time, the sessions
        h.set_processing_time(4)
        assert h.extract_output_values() == [("a", 3)]
        h.set_processing_time(12)  # 8, then the end (12)
        assert h.extract_output_values() == [("a", 3)] * 3
        assert h.num_keyed_state_entries() == 0


# -- ProcessingTimeoutTrigger -----------------------------------------------------------


def timeout_harness(trigger: Trigger) -> WindowOperatorTestHarness:
    return WindowOperatorTestHarness(GlobalWindows.create(), key, reduce=add, trigger=trigger)


def test_timeout_fires_after_the_first_element_without_reset() -> None:
    with timeout_harness(ProcessingTimeoutTrigger.of(CountTrigger.of(3), 50)) as h:
        h.process_element(("a", 1))
        h.set_processing_time(20)
        h.process_element(("a", 2))
        assert h.num_processing_time_timers() == 1
        h.set_processing_time(49)
        assert h.extract_output_values() == []
        h.set_processing_time(50)
        assert h.extract_output_values() == [("a", 3)]
        assert h.num_processing_time_timers() == 0
        assert h.num_keyed_state_entries() == 1  # the contents; timeout and count cleared


def test_timeout_with_reset_counts_from_the_latest_element() -> None:
    trigger = ProcessingTimeoutTrigger.of(CountTrigger.of(3), 50, reset_timer_on_new_record=True)
    with timeout_harness(trigger) as h:
        h.process_element(("a", 1))
        h.set_processing_time(20)
        h.process_element(("a", 2))
        assert h.num_processing_time_timers() == 1
        h.set_processing_time(50)
        assert h.extract_output_values() == []
        h.set_processing_time(70)
        assert h.extract_output_values() == [("a", 3)]


def test_nested_trigger_firing_first_cancels_the_timeout() -> None:
    with timeout_harness(ProcessingTimeoutTrigger.of(CountTrigger.of(3), 50)) as h:
        for v in (1, 2, 4):
            h.process_element(("a", v))
        assert h.extract_output_values() == [("a", 7)]
        assert h.num_processing_time_timers() == 0
        h.set_processing_time(100)
        assert h.extract_output_values() == [("a", 7)]


def test_timeout_without_clearing_keeps_its_state_and_arms_no_new_timer() -> None:
    trigger = ProcessingTimeoutTrigger.of(CountTrigger.of(3), 50, should_clear_on_timeout=False)
    with timeout_harness(trigger) as h:
        h.process_element(("a", 1))
        h.set_processing_time(50)
        assert h.extract_output_values() == [("a", 1)]
        assert h.num_keyed_state_entries() == 3  # contents, count, the spent timeout
        h.process_element(("a", 2))
        assert h.num_processing_time_timers() == 0


def test_purging_timeout_emits_batches() -> None:
    trigger = PurgingTrigger.of(ProcessingTimeoutTrigger.of(CountTrigger.of(3), 50))
    with timeout_harness(trigger) as h:
        h.process_element(("a", 1))
        h.process_element(("a", 2))
        h.set_processing_time(50)
        for v in (4, 8, 16):
            h.process_element(("a", v))
        assert h.extract_output_values() == [("a", 3), ("a", 28)]
        assert h.num_keyed_state_entries() == 0
        assert h.num_processing_time_timers() == 0


# -- GlobalWindows.create_with_end_of_stream_trigger ---------------------------------


def test_end_of_stream_trigger_fires_once_at_the_end_of_input() -> None:
    with WindowOperatorTestHarness(
        GlobalWindows.create_with_end_of_stream_trigger(), key, reduce=add
    ) as h:
        for k, v in [("a", 1), ("b", 2), ("a", 4)]:
            h.process_element((k, v), v)
        assert h.num_event_time_timers() == 2  # one per key
        h.process_watermark(1_000_000)
        assert h.extract_output_values() == []
        h.end_input()
        assert h.extract_output_values() == [("a", 5), ("b", 2)]
        assert h.num_event_time_timers() == 0
