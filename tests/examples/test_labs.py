"""The four labs of Flink's hands-on training as examples: ride cleansing, rides and fares,
hourly tips and long ride alerts.

For each lab: the cases of the training's own unit and integration tests (and a few more edges)
on hand-made records, the generated taxi data checked against a plain-Python computation of the
same answer at parallelism 1 and 4, and its ``main()`` with the summary it prints.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from examples import hourly_tips, long_ride_alerts, ride_cleansing, rides_and_fares
from examples.hourly_tips import FARE_WATERMARKS, HourlyTips, SumOfTips, larger
from examples.long_ride_alerts import RIDE_WATERMARKS, TWO_HOURS_MS, AlertFunction
from examples.ride_cleansing import starts_and_ends_in_nyc
from examples.rides_and_fares import Enrichment, RideAndFare
from examples.taxi import (
    BEGINNING_MS,
    TaxiFare,
    TaxiFareSource,
    TaxiRide,
    TaxiRideSource,
    fare_events,
    is_in_nyc,
    ride_events,
)
from flowactors import StreamExecutionEnvironment
from flowactors.testing import (
    KeyedOneInputStreamOperatorTestHarness,
    KeyedTwoInputStreamOperatorTestHarness,
    StreamRecord,
    Watermark,
    WindowOperatorTestHarness,
)
from flowactors.windows import TumblingEventTimeWindows

ROOT = Path(__file__).resolve().parents[2]
MINUTE = 60_000
HOUR = 60 * MINUTE
GENERATED_RIDES = 5_000


def f32(x: float) -> float:
    """``x`` as the float32 a Java ``float`` literal (``-73.9947F``) holds."""
    return float(struct.unpack("f", struct.pack("f", x))[0])


PENN_STATION = (f32(-73.9947), f32(40.750626))
NORTH_POLE = (0.0, 90.0)


def ride_event(
    ride_id: int = 1,
    is_start: bool = True,
    event_time: int = 0,
    start: tuple[float, float] = PENN_STATION,
    end: tuple[float, float] = PENN_STATION,
    driver_id: int = 0,
) -> TaxiRide:
    return TaxiRide(ride_id, is_start, event_time, *start, *end, 1, 0, driver_id)


def by_ride(ride: TaxiRide) -> tuple[int, bool]:
    return ride.ride_id, not ride.is_start


def datetime_of(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def t(minutes: int) -> int:
    """Training time: ``minutes`` after the beginning of the taxi data."""
    return BEGINNING_MS + minutes * MINUTE


# -- 1. ride cleansing ----------------------------------------------------------------------------

TO_THE_POLE = ride_event(start=PENN_STATION, end=NORTH_POLE)
FROM_THE_POLE = ride_event(start=NORTH_POLE, end=PENN_STATION)
AT_PENN_STATION = ride_event(start=PENN_STATION, end=PENN_STATION)
AT_THE_NORTH_POLE = ride_event(start=NORTH_POLE, end=NORTH_POLE)


@pytest.mark.parametrize(
    ("ride", "kept"),
    [
        (AT_PENN_STATION, True),
        (FROM_THE_POLE, False),
        (TO_THE_POLE, False),
        (AT_THE_NORTH_POLE, False),
    ],
    ids=["starts-and-ends-in-nyc", "starts-outside", "ends-outside", "starts-and-ends-outside"],
)
def test_cleansing_filter(ride: TaxiRide, kept: bool) -> None:
    assert starts_and_ends_in_nyc(ride) is kept


def test_cleansing_filter_checks_every_coordinate() -> None:
    inside, outside_lon, outside_lat = PENN_STATION, (-74.1, 40.75), (-73.99, 41.01)
    for start in (inside, outside_lon, outside_lat):
        for end in (inside, outside_lon, outside_lat):
            ride = ride_event(start=start, end=end)
            assert starts_and_ends_in_nyc(ride) is (start == end == inside)


async def test_cleansing_keeps_only_rides_in_nyc(env: StreamExecutionEnvironment) -> None:
    rides = env.from_collection([TO_THE_POLE, FROM_THE_POLE, AT_PENN_STATION, AT_THE_NORTH_POLE])
    assert await ride_cleansing.build(rides).execute_and_collect() == [AT_PENN_STATION]


def expected_cleansing(events: Iterable[TaxiRide]) -> list[TaxiRide]:
    return sorted(
        (
            r
            for r in events
            if is_in_nyc(r.start_lon, r.start_lat) and is_in_nyc(r.end_lon, r.end_lat)
        ),
        key=by_ride,
    )


@pytest.mark.parametrize("parallelism", [1, 4])
async def test_cleansing_of_generated_rides(parallelism: int) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    rides = env.from_source(TaxiRideSource(max_rides=GENERATED_RIDES), name="rides")
    kept = await ride_cleansing.build(rides).execute_and_collect()
    expected = expected_cleansing(ride_events(GENERATED_RIDES))
    assert sorted(kept, key=by_ride) == expected
    assert 0 < len(expected) < 2 * GENERATED_RIDES  # some dropped, some kept


# -- 2. rides and fares ---------------------------------------------------------------------------


def pair_ride(ride_id: int) -> TaxiRide:
    return TaxiRide(ride_id, True, 0, 0.0, 0.0, 0.0, 0.0, 1, 0, ride_id)


def pair_fare(ride_id: int) -> TaxiFare:
    return TaxiFare(ride_id, 0, ride_id, 0, "", 0.0, 0.0, 0.0)


def enrichment_harness() -> KeyedTwoInputStreamOperatorTestHarness:
    return KeyedTwoInputStreamOperatorTestHarness(
        Enrichment(), lambda ride: ride.ride_id, lambda fare: fare.ride_id
    )


def test_enrichment_ride_first_creates_and_clears_state() -> None:
    ride, fare = pair_ride(1), pair_fare(1)
    h = enrichment_harness()
    with h:
        h.process_element1(ride, 0)
        assert h.num_keyed_state_entries() == 1
        assert h.extract_output_values() == []
        h.process_element2(fare, 0)
        assert h.num_keyed_state_entries() == 0
        assert h.get_output() == [StreamRecord(RideAndFare(ride, fare), 0)]


def test_enrichment_fare_first_creates_and_clears_state() -> None:
    ride, fare = pair_ride(1), pair_fare(1)
    h = enrichment_harness()
    with h:
        h.process_element2(fare, 0)
        assert h.num_keyed_state_entries() == 1
        h.process_element1(ride, 0)
        assert h.num_keyed_state_entries() == 0
        assert h.get_output() == [StreamRecord(RideAndFare(ride, fare), 0)]
        assert h.extract_output_values()[0] == (ride, fare)  # a RideAndFare is a plain pair


def test_enrichment_keeps_the_unmatched_waiting() -> None:
    h = enrichment_harness()
    with h:
        h.process_element1(pair_ride(1))
        h.process_element2(pair_fare(2))
        h.process_element1(pair_ride(3))
        assert h.extract_output_values() == []
        assert h.num_keyed_state_entries() == 3
        h.process_element2(pair_fare(3))
        assert h.extract_output_values() == [(pair_ride(3), pair_fare(3))]
        assert h.num_keyed_state_entries() == 2


async def test_rides_and_fares_mixed_together(env: StreamExecutionEnvironment) -> None:
    rides = env.from_collection([pair_ride(i) for i in (1, 4, 3, 2)])
    fares = env.from_collection([pair_fare(i) for i in (2, 4, 1, 3)])
    pairs = await rides_and_fares.build(rides, fares).execute_and_collect()
    assert sorted(pairs, key=lambda p: p.ride.ride_id) == [
        (pair_ride(i), pair_fare(i)) for i in (1, 2, 3, 4)
    ]


async def test_rides_and_fares_use_start_events_only(env: StreamExecutionEnvironment) -> None:
    start = ride_event(1, True, t(0))
    rides = env.from_collection(
        [
            ride_event(1, False, t(10)),  # END events are dropped, before or after their START
            start,
            ride_event(1, False, t(20)),
            ride_event(2, True, t(1)),  # a ride without fare
            ride_event(3, False, t(2)),  # an END without START, but with a fare
        ]
    )
    fares = env.from_collection([pair_fare(3), pair_fare(1), pair_fare(4)])  # no ride 4
    pairs = await rides_and_fares.build(rides, fares).execute_and_collect()
    assert pairs == [RideAndFare(start, pair_fare(1))]


@pytest.mark.parametrize("parallelism", [1, 4])
async def test_rides_and_fares_of_generated_data(parallelism: int) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    rides = env.from_source(TaxiRideSource(max_rides=GENERATED_RIDES), name="rides")
    fares = env.from_source(TaxiFareSource(max_rides=GENERATED_RIDES), name="fares")
    pairs = await rides_and_fares.build(rides, fares).execute_and_collect()
    starts = sorted((r for r in ride_events(GENERATED_RIDES) if r.is_start), key=by_ride)
    expected = list(zip(starts, fare_events(GENERATED_RIDES), strict=True))
    assert sorted(pairs, key=lambda p: p.ride.ride_id) == expected
    assert all(ride.ride_id == fare.ride_id for ride, fare in expected)


# -- 3. hourly tips -------------------------------------------------------------------------------


def tip(driver_id: int, start_time: int, amount: float) -> TaxiFare:
    return TaxiFare(0, 0, driver_id, start_time, "", amount, 0.0, 0.0)


async def hourly(
    env: StreamExecutionEnvironment, fares: list[TaxiFare]
) -> list[tuple[int, int, float]]:
    stream = env.from_collection(fares).assign_timestamps_and_watermarks(FARE_WATERMARKS)
    return sorted(await hourly_tips.build(stream).execute_and_collect())


async def test_hourly_tips_one_driver_one_tip(env: StreamExecutionEnvironment) -> None:
    assert await hourly(env, [tip(1, t(0), 1.0)]) == [(t(60), 1, 1.0)]


async def test_hourly_tips_are_summed_by_hour(env: StreamExecutionEnvironment) -> None:
    fares = [tip(1, t(0), 1.0), tip(1, t(15), 5.0), tip(1, t(90), 10.0)]
    assert await hourly(env, fares) == [(t(60), 1, 6.0), (t(120), 1, 10.0)]


async def test_hourly_tips_max_across_drivers(env: StreamExecutionEnvironment) -> None:
    fares = [
        tip(1, t(0), 1.0),
        tip(1, t(15), 5.0),
        tip(1, t(90), 10.0),
        tip(2, t(90), 20.0),
        tip(3, t(70), 0.0),
        tip(4, t(70), 0.0),
        tip(4, t(80), 1.0),
        tip(5, t(100), 10.0),
    ]
    assert await hourly(env, fares) == [(t(60), 1, 6.0), (t(120), 2, 20.0)]


async def test_hourly_tips_fare_on_the_hour_belongs_to_the_next(
    env: StreamExecutionEnvironment,
) -> None:
    fares = [
        tip(1, t(0), 1.0),  # the first instant of hour one
        tip(1, t(60) - 1, 2.0),  # its last millisecond
        tip(2, t(60), 5.0),  # the first instant of hour two, not the end of hour one
    ]
    assert await hourly(env, fares) == [(t(60), 1, 3.0), (t(120), 2, 5.0)]


async def test_hourly_tips_skip_hours_without_fares(env: StreamExecutionEnvironment) -> None:
    fares = [tip(1, t(0), 1.0), tip(2, t(180), 2.0), tip(1, t(181), 0.5)]
    assert await hourly(env, fares) == [(t(60), 1, 1.0), (t(240), 2, 2.0)]


TIED_DRIVERS = {
    "small-id-first": [tip(3, t(5), 10.0), tip(7, t(10), 4.0), tip(7, t(20), 6.0)],
    "large-id-first": [tip(7, t(5), 4.0), tip(3, t(10), 10.0), tip(7, t(20), 6.0)],
}


@pytest.mark.parametrize("order", list(TIED_DRIVERS))
async def test_hourly_tips_tie_goes_to_the_smaller_driver_id(
    env: StreamExecutionEnvironment, order: str
) -> None:
    fares = [*TIED_DRIVERS[order], tip(9, t(30), 9.0)]  # drivers 3 and 7 both earn $10
    assert await hourly(env, fares) == [(t(60), 3, 10.0)]


def test_larger_prefers_the_total_then_the_smaller_driver_id() -> None:
    assert larger((1, 5, 2.0), (1, 3, 1.0)) == (1, 5, 2.0)
    assert larger((1, 5, 2.0), (1, 3, 3.0)) == (1, 3, 3.0)
    assert larger((1, 5, 2.0), (1, 3, 2.0)) == (1, 3, 2.0)
    assert larger((1, 3, 2.0), (1, 5, 2.0)) == (1, 3, 2.0)


def test_tips_per_driver_window_is_stamped_within_its_hour() -> None:
    """The per-driver sums carry their window's last millisecond, so that the all-driver
    window of the same hour (not the next) receives them."""
    h = WindowOperatorTestHarness(
        TumblingEventTimeWindows.of(hourly_tips.HOUR),
        key_selector=lambda fare: fare.driver_id,
        aggregate=SumOfTips(),
        window_fn=HourlyTips(),
    )
    with h:
        for fare in [tip(1, t(0), 1.0), tip(2, t(59), 2.0), tip(1, t(60), 4.0)]:
            h.process_element(fare, fare.start_time)
        assert h.num_event_time_timers() == 3
        h.process_watermark(t(60) - 1)
        assert sorted(h.extract_output_records(), key=lambda r: r.value) == [
            StreamRecord((t(60), 1, 1.0), t(60) - 1),
            StreamRecord((t(60), 2, 2.0), t(60) - 1),
        ]
        h.end_input()
        assert h.extract_output_values()[-1] == (t(120), 1, 4.0)
        assert h.num_keyed_state_entries() == 0


def expected_hourly_tips(fares: Iterable[TaxiFare]) -> list[tuple[int, int, float]]:
    totals: dict[tuple[int, int], float] = defaultdict(float)
    for fare in fares:
        end = (fare.start_time // HOUR + 1) * HOUR
        totals[end, fare.driver_id] += fare.tip
    best: dict[int, tuple[float, int]] = {}
    for (end, driver), total in totals.items():
        if end not in best or (total, -driver) > (best[end][0], -best[end][1]):
            best[end] = (total, driver)
    return sorted((end, driver, total) for end, (total, driver) in best.items())


@pytest.mark.parametrize("parallelism", [1, 4])
async def test_hourly_tips_of_generated_fares(parallelism: int) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    fares = env.from_source(
        TaxiFareSource(max_rides=GENERATED_RIDES), FARE_WATERMARKS, name="fares"
    )
    result = sorted(await hourly_tips.build(fares).execute_and_collect())
    expected = expected_hourly_tips(fare_events(GENERATED_RIDES))
    assert result == expected
    assert len(expected) == 28  # 5,000 fares 20 s apart: 27.8 hours


# -- 4. long ride alerts --------------------------------------------------------------------------


def alert_harness() -> KeyedOneInputStreamOperatorTestHarness:
    return KeyedOneInputStreamOperatorTestHarness(AlertFunction(), lambda ride: ride.ride_id)


def feed(h: KeyedOneInputStreamOperatorTestHarness, *rides: TaxiRide) -> None:
    for ride in rides:
        h.process_element(ride, ride.event_time)


START_1 = ride_event(1, True, t(0))
END_1_ONE_MINUTE_LATER = ride_event(1, False, t(1))
END_1_THREE_HOURS_LATER = ride_event(1, False, t(180))
END_1_TWO_HOURS_LATER = ride_event(1, False, t(120))


def test_alert_uses_state_and_timers_and_clears_them() -> None:
    h = alert_harness()
    with h:
        feed(h, START_1)
        assert h.num_event_time_timers() == 1
        assert h.num_keyed_state_entries() == 1
        feed(h, END_1_ONE_MINUTE_LATER)
        assert h.num_event_time_timers() == 0
        assert h.num_keyed_state_entries() == 0
        assert h.get_output() == []


def test_no_alert_for_a_short_ride_ending_before_it_starts() -> None:
    h = alert_harness()
    with h:
        feed(h, END_1_ONE_MINUTE_LATER)
        assert h.num_keyed_state_entries() == 1
        feed(h, START_1)
        assert h.get_output() == []
        assert h.num_event_time_timers() == 0
        assert h.num_keyed_state_entries() == 0


@pytest.mark.parametrize("end_first", [False, True], ids=["start-first", "end-first"])
def test_alert_for_a_long_ride(end_first: bool) -> None:
    h = alert_harness()
    with h:
        feed(
            h,
            *(
                [END_1_THREE_HOURS_LATER, START_1]
                if end_first
                else [START_1, END_1_THREE_HOURS_LATER]
            ),
        )
        assert h.extract_output_values() == [1]
        assert h.num_event_time_timers() == 0
        assert h.num_keyed_state_entries() == 0
        h.end_input()
        assert h.extract_output_values() == [1]


@pytest.mark.parametrize("end_first", [False, True], ids=["start-first", "end-first"])
def test_no_alert_for_a_ride_of_exactly_two_hours(end_first: bool) -> None:
    """As in the training's solution, only a duration over two hours is too long."""
    h = alert_harness()
    with h:
        feed(
            h,
            *([END_1_TWO_HOURS_LATER, START_1] if end_first else [START_1, END_1_TWO_HOURS_LATER]),
        )
        h.end_input()
        assert h.extract_output_values() == []
        assert h.num_event_time_timers() == 0
        assert h.num_keyed_state_entries() == 0


def test_no_alert_without_watermark_or_end_event() -> None:
    h = alert_harness()
    with h:
        start_2 = ride_event(2, True, t(180))
        feed(h, START_1, start_2)
        assert h.get_output() == []
        h.process_watermark(t(120))
        assert h.get_output() == [StreamRecord(1, t(120)), Watermark(t(120))]


def test_alert_on_watermark() -> None:
    h = alert_harness()
    with h:
        feed(h, START_1)
        assert h.num_keyed_state_entries() > 0
        h.process_watermark(t(120) - 1)
        assert h.extract_output_values() == []
        h.process_watermark(t(120))  # two hours after the start, and still no END
        assert h.get_output() == [Watermark(t(120) - 1), StreamRecord(1, t(120)), Watermark(t(120))]
        assert h.num_keyed_state_entries() == 0
        assert h.num_event_time_timers() == 0


def test_no_second_alert_when_the_end_comes_after_the_timer() -> None:
    h = alert_harness()
    with h:
        feed(h, START_1)
        h.process_watermark(t(150))
        assert h.extract_output_values() == [1]
        feed(h, END_1_THREE_HOURS_LATER)
        assert h.extract_output_values() == [1]
        # the END waits two hours for a START, then goes: nothing leaks
        assert h.num_keyed_state_entries() == 1
        h.process_watermark(t(300) - 1)
        assert h.num_keyed_state_entries() == 1
        h.process_watermark(t(300))
        assert h.num_keyed_state_entries() == 0
        assert h.num_event_time_timers() == 0
        h.end_input()
        assert h.extract_output_values() == [1]


def test_an_end_without_start_is_dropped_silently() -> None:
    h = alert_harness()
    with h:
        feed(h, END_1_THREE_HOURS_LATER)
        h.end_input()
        assert h.extract_output_values() == []
        assert h.num_keyed_state_entries() == 0
        assert h.num_event_time_timers() == 0


def test_a_late_start_of_a_long_ride_that_ended_is_reported_once() -> None:
    h = alert_harness()
    with h:
        feed(h, END_1_THREE_HOURS_LATER)
        h.process_watermark(t(170))  # past the START's two hours, before the END's two hours
        feed(h, START_1)
        assert h.extract_output_values() == [1]
        assert h.num_keyed_state_entries() == 0
        assert h.num_event_time_timers() == 0
        h.end_input()
        assert h.extract_output_values() == [1]


def test_a_ride_whose_end_never_comes_is_reported_at_the_end_of_input() -> None:
    h = alert_harness()
    with h:
        feed(h, ride_event(7, True, t(0)))
        h.process_watermark(t(60))
        assert h.extract_output_values() == []
        h.end_input()
        assert h.extract_output_values() == [7]
        assert h.num_keyed_state_entries() == 0


def test_duplicate_events_do_not_alert_twice() -> None:
    h = alert_harness()
    with h:
        feed(h, START_1, START_1, END_1_THREE_HOURS_LATER, END_1_THREE_HOURS_LATER)
        h.end_input()
        assert h.extract_output_values() == [1]


async def long_rides(env: StreamExecutionEnvironment, rides: list[TaxiRide]) -> list[int]:
    stream = env.from_collection(rides).assign_timestamps_and_watermarks(RIDE_WATERMARKS)
    return sorted(await long_ride_alerts.build(stream).execute_and_collect())


async def test_long_rides_short_ride(env: StreamExecutionEnvironment) -> None:
    assert await long_rides(env, [START_1, END_1_ONE_MINUTE_LATER]) == []


async def test_long_rides_short_ride_out_of_order(env: StreamExecutionEnvironment) -> None:
    assert await long_rides(env, [END_1_ONE_MINUTE_LATER, START_1]) == []


async def test_long_rides_multiple_rides(env: StreamExecutionEnvironment) -> None:
    long_ride_without_end = ride_event(1, True, t(0))
    two_hour_ride = ride_event(2, True, t(0))
    other_long_ride = ride_event(3, True, t(1))
    short_ride = ride_event(4, True, t(60))
    rides = [
        long_ride_without_end,
        two_hour_ride,
        other_long_ride,
        short_ride,
        ride_event(4, False, t(120)),  # short ride ended
        ride_event(2, False, t(0)),  # (the training's "two-hour ride" ends when it starts)
        ride_event(3, False, t(180)),  # other long ride ended
    ]
    assert await long_rides(env, rides) == [1, 3]


def expected_alerts(events: Iterable[TaxiRide]) -> list[int]:
    """Rides with a START and either no END or an END more than two hours later."""
    starts: dict[int, int] = {}
    ends: dict[int, int] = {}
    for ride in events:
        (starts if ride.is_start else ends)[ride.ride_id] = ride.event_time
    return sorted(
        ride_id
        for ride_id, start in starts.items()
        if ride_id not in ends or ends[ride_id] - start > TWO_HOURS_MS
    )


@pytest.mark.parametrize("drain_ends", [False, True], ids=["ends-missing", "all-ends"])
@pytest.mark.parametrize("parallelism", [1, 4])
async def test_long_rides_of_generated_rides(parallelism: int, drain_ends: bool) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    source = TaxiRideSource(max_rides=GENERATED_RIDES, drain_ends=drain_ends)
    rides = env.from_source(source, RIDE_WATERMARKS, name="rides")
    alerts = sorted(await long_ride_alerts.build(rides).execute_and_collect())
    events = list(ride_events(GENERATED_RIDES, drain_ends=drain_ends))
    expected = expected_alerts(events)
    assert alerts == expected
    ended = {ride.ride_id for ride in events if not ride.is_start}
    never_ended = [ride_id for ride_id in expected if ride_id not in ended]
    assert len(expected) - len(never_ended) >= 10  # rides that did end, after over two hours
    assert (len(never_ended) > 0) is not drain_ends


def test_long_ride_state_does_not_grow_with_ended_rides() -> None:
    """The generated stream through the alert function with a watermark after every event:
    state stays as small as the rides under way, and nothing is left at the end."""
    events = list(ride_events(GENERATED_RIDES, drain_ends=True))
    most = 0
    latest = 0
    h = alert_harness()
    with h:
        for ride in events:
            h.process_element(ride, ride.event_time)
            latest = max(latest, ride.event_time)
            h.process_watermark(latest - 60_000 - 1)
            most = max(most, h.num_keyed_state_entries())
        # 3 rides start a minute, most end within the hour, and no first event is kept more
        # than two hours (a leak of every END or START would reach thousands)
        assert most < 400
        h.end_input()
        assert h.num_keyed_state_entries() == 0
        assert h.num_event_time_timers() == 0
        assert sorted(h.extract_output_values()) == expected_alerts(events)


# -- main() of each lab ---------------------------------------------------------------------------


def test_ride_cleansing_main(capsys: pytest.CaptureFixture[str]) -> None:
    ride_cleansing.main(["--rides", "500", "--parallelism", "2"])
    lines = capsys.readouterr().out.splitlines()
    kept = expected_cleansing(ride_events(500))
    rides = len({r.ride_id for r in kept})
    starts = sum(r.is_start for r in kept)
    assert lines[0] == f"Ride cleansing: {rides} of 500 rides start and end in NYC"
    assert lines[1] == f"  kept {len(kept):,} ride events: {starts} START, {len(kept) - starts} END"
    assert lines[2].startswith(f"  ride {kept[0].ride_id:>6} START from (")
    assert lines[-1] == f"  ... and {len(kept) - 5:,} more"


def test_rides_and_fares_main(capsys: pytest.CaptureFixture[str]) -> None:
    rides_and_fares.main(["--rides", "500", "--parallelism", "3"])
    lines = capsys.readouterr().out.splitlines()
    fares = list(fare_events(500))
    total = sum(f.total_fare for f in fares)
    tips = sum(f.tip for f in fares)
    assert lines[0] == "Rides and fares: 500 of 500 rides joined with their fares"
    assert (
        lines[1] == f"  fares ${total:,.2f} in total, of which tips ${tips:,.2f}; 250 paid by card"
    )
    assert lines[2].startswith("  ride      1: driver ")
    assert lines[2].endswith(f"CASH ${fares[0].total_fare:.2f} (tip ${fares[0].tip:.2f})")
    assert lines[-1] == "  ... and 495 more"


def test_hourly_tips_main(capsys: pytest.CaptureFixture[str]) -> None:
    hourly_tips.main(["--rides", "1000", "--parallelism", "4"])
    lines = capsys.readouterr().out.splitlines()
    expected = expected_hourly_tips(fare_events(1000))  # 1,000 fares: 5.6 hours
    assert lines[0] == "Hourly tips: the top driver of each of 6 hours (1,000 fares)"
    assert (
        lines[1]
        == f"  2020-01-01 12:00 - 13:00 UTC  driver {expected[0][1]}  ${expected[0][2]:,.2f}"
    )
    assert [line.split()[6] for line in lines[1:-1]] == [str(d) for _, d, _ in expected]
    assert lines[6].endswith("(fares end at 17:33)")
    _, driver, total = max(expected, key=lambda x: x[2])
    assert lines[-1].startswith(f"Best hour: driver {driver} with ${total:,.2f} in the hour to ")


def test_long_ride_alerts_main(capsys: pytest.CaptureFixture[str]) -> None:
    long_ride_alerts.main(["--rides", "2000", "--parallelism", "2"])
    lines = capsys.readouterr().out.splitlines()
    alerts = expected_alerts(ride_events(2000))
    every_event = list(ride_events(2000, drain_ends=True))
    starts = {r.ride_id: r.event_time for r in every_event if r.is_start}
    lasted = {r.ride_id: r.event_time - starts[r.ride_id] for r in every_event if not r.is_start}
    longer = [ride_id for ride_id in alerts if lasted[ride_id] > TWO_HOURS_MS]
    assert 0 < len(longer) < 10 < len(alerts) - len(longer)
    assert lines[0] == f"Long ride alerts: {len(alerts)} of 2,000 rides"
    assert lines[1] == f"  {len(longer)} rides lasted more than two hours:"
    first = longer[0]
    assert lines[2] == (
        f"    ride {first:>6}: started {datetime_of(starts[first])} UTC, "
        f"lasted {lasted[first] // HOUR} h {lasted[first] // MINUTE % 60:02d} min"
    )
    assert len(lines) == 3 + len(longer)
    assert lines[-1] == (
        f"  {len(alerts) - len(longer)} rides had not ended when the input stopped "
        "(their END never came)"
    )


@pytest.mark.parametrize(
    "module", ["ride_cleansing", "rides_and_fares", "hourly_tips", "long_ride_alerts"]
)
def test_examples_run_as_modules(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"examples.{module}", "--rides", "100", "--parallelism", "2"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    first = done.stdout.splitlines()[0]
    assert first.split(":")[0] in {
        "Ride cleansing",
        "Rides and fares",
        "Hourly tips",
        "Long ride alerts",
    }
