"""The taxi data generators against reference values from the training's Java generators.

``tests/fixtures/taxi_reference.json.gz`` holds what the Java classes of apache/flink-training
(``DataGenerator``, ``TaxiRideGenerator``, ``TaxiFareGenerator``) produce on OpenJDK 17: every
field of the START and END events and of the fares of rides 1 to 2,000 (floats as float32 bit
patterns) and the first 3,000 events of the endless ride stream. The ``java.util.Random`` and
``StrictMath.log`` values below were printed by the JDK too.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import struct
from collections.abc import AsyncGenerator
from contextlib import aclosing
from itertools import islice
from pathlib import Path
from typing import Any, cast

import pytest

from examples.taxi import (
    BEGINNING_MS,
    JavaRandom,
    TaxiFare,
    TaxiFareSource,
    TaxiRide,
    TaxiRideSource,
    fare,
    fare_events,
    fdlibm_log,
    is_in_nyc,
    ride_end,
    ride_events,
    ride_start,
    rides_within,
)
from examples.taxi.generator import _a_long, _Gaussians
from flowactors import StreamExecutionEnvironment
from flowactors.spi import Boundedness, Sink, SinkWriter, SinkWriterContext
from tests.support.tasks import flowactors_tasks

FIXTURE = Path(__file__).parent.parent / "fixtures" / "taxi_reference.json.gz"
RIDES = 2000


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    with gzip.open(FIXTURE, "rt", encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def float_of(bits: int) -> float:
    """The float32 with these bits (``Float.intBitsToFloat``), as a Python float."""
    return float(struct.unpack("<f", struct.pack("<i", bits))[0])


def exact(x: float) -> str:
    """A float's exact value (``hex`` tells -0.0 from 0.0 and any non-float32 digits)."""
    return x.hex()


def ride_row(ride: TaxiRide) -> list[Any]:
    return [
        ride.ride_id,
        ride.is_start,
        ride.event_time,
        exact(ride.start_lon),
        exact(ride.start_lat),
        exact(ride.end_lon),
        exact(ride.end_lat),
        ride.passenger_cnt,
        ride.taxi_id,
        ride.driver_id,
    ]


def reference_ride(row: list[Any]) -> TaxiRide:
    ride_id, is_start, time, lon0, lat0, lon1, lat1, passengers, taxi, driver = row
    return TaxiRide(
        ride_id,
        bool(is_start),
        time,
        float_of(lon0),
        float_of(lat0),
        float_of(lon1),
        float_of(lat1),
        passengers,
        taxi,
        driver,
    )


def fare_row(f: TaxiFare) -> list[Any]:
    return [
        f.ride_id,
        f.taxi_id,
        f.driver_id,
        f.start_time,
        f.payment_type,
        exact(f.tip),
        exact(f.tolls),
        exact(f.total_fare),
    ]


def reference_fare(row: list[Any]) -> TaxiFare:
    ride_id, taxi, driver, time, payment, tip, tolls, total = row
    return TaxiFare(
        ride_id, taxi, driver, time, payment, float_of(tip), float_of(tolls), float_of(total)
    )


# -- the records, field for field ---------------------------------------------------------------


def test_fixture_covers_what_the_tests_claim(reference: dict[str, Any]) -> None:
    assert [row[0] for row in reference["starts"]] == list(range(1, RIDES + 1))
    assert [row[0] for row in reference["ends"]] == list(range(1, RIDES + 1))
    assert [row[0] for row in reference["fares"]] == list(range(1, RIDES + 1))
    assert len(reference["stream"]) == 3000


def test_start_events_equal_java(reference: dict[str, Any]) -> None:
    for row in reference["starts"]:
        expected = reference_ride(row)
        assert ride_row(ride_start(row[0])) == ride_row(expected), row[0]


def test_end_events_equal_java(reference: dict[str, Any]) -> None:
    for row in reference["ends"]:
        expected = reference_ride(row)
        assert ride_row(ride_end(row[0])) == ride_row(expected), row[0]


def test_fares_equal_java(reference: dict[str, Any]) -> None:
    for row in reference["fares"]:
        expected = reference_fare(row)
        assert fare_row(fare(row[0])) == fare_row(expected), row[0]


def test_records_compare_equal_to_ones_built_normally(reference: dict[str, Any]) -> None:
    # the generator builds rides through a fast path; they must be ordinary equal records
    for row in reference["starts"][:50] + reference["ends"][:50]:
        ride = ride_start(row[0]) if row[1] else ride_end(row[0])
        assert ride == reference_ride(row)
        assert hash(ride) == hash(reference_ride(row))
    assert fare(10) == reference_fare(reference["fares"][9])


def test_float_fields_hold_float32_values() -> None:
    def is_float32(x: float) -> bool:
        return float(struct.unpack("<f", struct.pack("<f", x))[0]) == x

    for ride_id in range(1, 200):
        ride = ride_start(ride_id)
        assert all(
            is_float32(x) for x in (ride.start_lon, ride.start_lat, ride.end_lon, ride.end_lat)
        )
        f = fare(ride_id)
        assert all(is_float32(x) for x in (f.tip, f.tolls, f.total_fare))


def test_data_shape() -> None:
    """Facts the labs rely on: some rides leave NYC, some last over 2 hours, tolls every 10th."""
    starts = [ride_start(i) for i in range(1, RIDES + 1)]
    ends = [ride_end(i) for i in range(1, RIDES + 1)]
    inside = [r for r in starts if is_in_nyc(r.start_lon, r.start_lat)]
    assert 0 < len(inside) < RIDES
    long_rides = [e for s, e in zip(starts, ends) if e.event_time - s.event_time > 7_200_000]
    assert 0 < len(long_rides) < RIDES // 10
    assert starts[0].event_time == BEGINNING_MS + 20_000
    assert all(s.driver_id == s.taxi_id for s in starts)
    assert {s.driver_id for s in starts} <= set(range(2_013_000_000, 2_013_000_200))
    fares = [fare(i) for i in range(1, 101)]
    assert all(f.tolls == 0.0 for f in fares if f.ride_id % 10)
    assert [f.payment_type for f in fares[:2]] == ["CASH", "CARD"]


def test_is_in_nyc_includes_its_edges() -> None:
    assert is_in_nyc(-74.05, 40.5) and is_in_nyc(-73.7, 41.0) and is_in_nyc(-73.9, 40.7)
    assert not is_in_nyc(-74.0500001, 40.7) and not is_in_nyc(-73.9, 41.0000001)


# -- the ride stream's order --------------------------------------------------------------------


def test_ride_stream_order_equals_java(reference: dict[str, Any]) -> None:
    events = list(islice(ride_events(), 3000))
    assert [[e.ride_id, int(e.is_start), e.event_time] for e in events] == reference["stream"]
    # and the events are the very records ride_start / ride_end make
    by_key = {(row[0], bool(row[1])): row for row in reference["starts"] + reference["ends"]}
    for e in events:
        assert ride_row(e) == ride_row(reference_ride(by_key[e.ride_id, e.is_start]))


def test_ride_stream_is_out_of_order_with_equal_end_times(reference: dict[str, Any]) -> None:
    stream = reference["stream"]
    times = [t for _, _, t in stream]
    assert times != sorted(times)
    # ties between END events exist, so the PriorityQueue tie order is really exercised
    ends = [(t, i) for i, start, t in stream if not start]
    assert len({t for t, _ in ends}) < len(ends)


def test_bounded_ride_stream_is_a_prefix_of_the_endless_one() -> None:
    bounded = list(ride_events(1000))
    assert bounded == list(islice(ride_events(), len(bounded)))
    assert sum(e.is_start for e in bounded) == 1000
    assert all(e.ride_id <= 1000 for e in bounded)
    # the stopped Java generator never emits the END events still queued: exactly those after
    # the last start
    last_start = ride_start(1000).event_time
    emitted_ends = sorted((e for e in bounded if not e.is_start), key=lambda e: e.ride_id)
    all_ends = [ride_end(i) for i in range(1, 1001)]
    assert emitted_ends == [e for e in all_ends if e.event_time <= last_start]
    assert 0 < len(all_ends) - len(emitted_ends) < 1000


def test_bounded_ride_stream_between_steps_keeps_only_its_rides() -> None:
    assert list(ride_events(12)) == [e for e in ride_events(15) if e.ride_id <= 12]
    assert list(ride_events(0)) == []


def test_drained_ride_stream_has_both_events_of_every_ride() -> None:
    plain = list(ride_events(503))
    drained = list(ride_events(503, drain_ends=True))
    assert drained[: len(plain)] == plain
    assert sorted(drained, key=lambda e: (e.ride_id, not e.is_start)) == [
        r for i in range(1, 504) for r in (ride_start(i), ride_end(i))
    ]
    tail = [e.event_time for e in drained[len(plain) :]]
    assert tail == sorted(tail)


def test_event_time_bound() -> None:
    assert rides_within(3_600_000) == 179  # ride 180 starts exactly at BEGINNING + 1 h
    assert rides_within(3_600_001) == 180
    assert rides_within(0) == 0
    fares = list(fare_events(max_event_time_ms=3_600_000))
    assert [f.ride_id for f in fares] == list(range(1, 180))
    assert fares[-1].start_time < BEGINNING_MS + 3_600_000
    assert list(ride_events(max_event_time_ms=3_600_000)) == list(ride_events(179))
    assert list(fare_events(100, max_event_time_ms=3_600_000)) == list(fare_events(100))


def test_fare_stream_is_in_ride_order() -> None:
    assert list(fare_events(300)) == [fare(i) for i in range(1, 301)]
    assert next(iter(fare_events())) == fare(1)


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        list(ride_events(-1))
    with pytest.raises(ValueError):
        list(fare_events(-1))
    with pytest.raises(ValueError):
        TaxiRideSource(10, rate=0)
    with pytest.raises(ValueError):
        TaxiFareSource(-5)


# -- java.util.Random and StrictMath.log --------------------------------------------------------


def test_next_int() -> None:
    rnd = JavaRandom(42)
    assert [rnd.next_int(100) for _ in range(10)] == [30, 63, 48, 84, 70, 25, 5, 18, 19, 93]
    rnd = JavaRandom(42)  # a power of two takes the multiply-and-shift path
    assert [rnd.next_int(16) for _ in range(10)] == [11, 0, 10, 0, 4, 15, 4, 11, 10, 1]
    rnd = JavaRandom(42)  # about half the draws are rejected for this bound
    assert [rnd.next_int((1 << 30) + 1) for _ in range(10)] == [
        117392763,
        102948884,
        662969970,
        595021505,
        196118093,
        969067502,
        791955276,
        819572292,
        592164476,
        995688456,
    ]
    rnd = JavaRandom(-7)
    assert [rnd.next_int() for _ in range(5)] == [
        1155869324,
        -423064701,
        -1403676116,
        -232591881,
        -2055186340,
    ]
    rnd = JavaRandom(-(1 << 63))  # Long.MIN_VALUE
    assert [rnd.next_int(1000) for _ in range(5)] == [360, 948, 29, 447, 515]
    with pytest.raises(ValueError):
        rnd.next_int(0)


def test_next_double() -> None:
    rnd = JavaRandom(42)
    assert [rnd.next_double() for _ in range(5)] == [
        float.fromhex(h)
        for h in (
            "0x1.74833a06ff457p-1",
            "0x1.5dcf778622e01p-1",
            "0x1.3c20f3f12bbb4p-2",
            "0x1.1bba76b52c856p-2",
            "0x1.54c2d50bb0864p-1",
        )
    ]


def test_next_gaussian() -> None:
    rnd = JavaRandom(42)
    assert [rnd.next_gaussian() for _ in range(6)] == [
        float.fromhex(h)
        for h in (
            "0x1.2453e82115d86p0",
            "0x1.d6bca38120847p-1",
            "-0x1.e654eb7a040c2p-1",
            "-0x1.1b63b7251328p0",
            "0x1.1fb89a19b83afp-2",
            "0x1.5e86e10aad3bcp-1",
        )
    ]
    # seeds where the C library's log would be one unit off in the last place
    for seed, first, second in (
        (17, "0x1.127ac8e670607p0", "0x1.d2647bc6f0bdbp-1"),
        (35, "0x1.c56026ff27be3p0", "-0x1.c826642c13868p-6"),
    ):
        rnd = JavaRandom(seed)
        assert [rnd.next_gaussian(), rnd.next_gaussian()] == [
            float.fromhex(first),
            float.fromhex(second),
        ]


def test_cached_gaussian_survives_other_draws_and_dies_with_set_seed() -> None:
    rnd = JavaRandom(42)
    got = [rnd.next_gaussian(), rnd.next_int(100), rnd.next_gaussian(), rnd.next_gaussian()]
    assert got == [
        float.fromhex("0x1.2453e82115d86p0"),
        70,
        float.fromhex("0x1.d6bca38120847p-1"),
        float.fromhex("0x1.1b814afda3d2fp-2"),
    ]
    rnd.set_seed(42)
    assert rnd.next_gaussian() == float.fromhex("0x1.2453e82115d86p0")


def test_shuffle() -> None:
    for seed, expected in (
        (0, [4, 8, 9, 6, 3, 5, 2, 1, 7, 0]),
        (5, [3, 4, 2, 8, 5, 6, 9, 0, 1, 7]),
        (123456789, [9, 2, 1, 6, 4, 8, 7, 3, 0, 5]),
    ):
        items = list(range(10))
        JavaRandom(seed).shuffle(items)
        assert items == expected


def test_fdlibm_log_equals_strictmath_log() -> None:
    cases = {
        # the first two differ from glibc's correctly rounded log in the last bit
        "0x1.2f722439e2f33p-2": "-0x1.375d60aaa37c6p0",
        "0x1.36b195967b006p-1": "-0x1.ff816a96f2acap-2",
        "0x0.0000000000001p-1022": "-0x1.74385446d71c3p9",
        "0x0.012688b70e62bp-1022": "-0x1.64e69394d9508p9",
        "0x1.000008p0": "0x1.fffff800002abp-22",
        "0x1.fffffp-1": "-0x1.0000040000155p-21",
        "0x1.0p1": "0x1.62e42fefa39efp-1",
        "0x1.7e43c8800759cp996": "0x1.5963447f87fb5p9",
        "0x1.4p3": "0x1.26bb1bbb55516p1",
    }
    for x, log_x in cases.items():
        assert fdlibm_log(float.fromhex(x)) == float.fromhex(log_x), x
    assert fdlibm_log(1.0) == 0.0
    assert fdlibm_log(0.0) == -math.inf
    assert fdlibm_log(math.inf) == math.inf
    assert math.isnan(fdlibm_log(-1.0)) and math.isnan(fdlibm_log(math.nan))


def test_generator_gaussians_are_java_randoms() -> None:
    # the generator's inlined Random must agree with JavaRandom, also where glibc's log would not
    for seed in (*range(60), 1 << 40, -3):
        gaussians = _Gaussians(seed)
        for _ in range(3):
            gaussians.more()
        rnd = JavaRandom(seed)
        assert gaussians.values == [rnd.next_gaussian() for _ in range(8)], seed


def test_a_long_rounds_like_math_round() -> None:
    gaussians = _Gaussians(1)
    for x, rounded in ((2.5, 3), (-2.5, -2), (0.49999999999999994, 0), (-0.5, 0), (7.0, 7)):
        gaussians.values[:] = [x]
        assert _a_long(gaussians, (-10, 10, 0.0, 1.0)) == rounded, x
    gaussians.values[:] = [-11.0, 11.0, 4.6]  # out-of-range draws are skipped
    assert _a_long(gaussians, (-10, 10, 0.0, 1.0)) == 5


# -- the sources --------------------------------------------------------------------------------


class RecordingSink(Sink[Any]):
    """Keeps every record with its timestamp."""

    max_parallelism = 1

    def __init__(self) -> None:
        self.records: list[tuple[Any, int | None]] = []

    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        records = self.records

        class Writer(SinkWriter[Any]):
            async def write(self, values: list[Any], timestamps: list[int | None] | None) -> None:
                assert timestamps is not None
                records.extend(zip(values, timestamps, strict=True))

        return Writer()


async def test_ride_source_emits_the_ride_stream(env: StreamExecutionEnvironment) -> None:
    out = await env.from_source(TaxiRideSource(max_rides=500), name="rides").execute_and_collect()
    assert out == list(ride_events(500))


async def test_fare_source_emits_the_fare_stream(env: StreamExecutionEnvironment) -> None:
    out = await env.from_source(TaxiFareSource(max_rides=500), name="fares").execute_and_collect()
    assert out == list(fare_events(500))


async def test_sources_stamp_event_times() -> None:
    env = StreamExecutionEnvironment(parallelism=2)
    rides, fares = RecordingSink(), RecordingSink()
    env.from_source(TaxiRideSource(333, drain_ends=True)).sink_to(rides)
    env.from_source(TaxiFareSource(max_event_time_ms=3_600_000)).sink_to(fares)
    await env.execute()
    assert rides.records == [(e, e.event_time) for e in ride_events(333, drain_ends=True)]
    assert fares.records == [(f, f.start_time) for f in fare_events(179)]


async def test_endless_ride_source_streams_until_closed(reference: dict[str, Any]) -> None:
    source = TaxiRideSource()
    assert source.boundedness is Boundedness.CONTINUOUS_UNBOUNDED
    assert TaxiFareSource().boundedness is Boundedness.CONTINUOUS_UNBOUNDED
    assert TaxiRideSource(5).boundedness is Boundedness.BOUNDED
    env = StreamExecutionEnvironment()
    seen: list[list[int]] = []
    # execute_and_stream is an async generator, though typed as an AsyncIterator
    stream = cast("AsyncGenerator[TaxiRide, None]", env.from_source(source).execute_and_stream())
    async with aclosing(stream) as results:
        async for e in results:
            seen.append([e.ride_id, int(e.is_start), e.event_time])
            if len(seen) == 3000:
                break
    assert seen == reference["stream"]
    assert flowactors_tasks() == []


async def test_rate_limits_the_ride_source() -> None:
    env = StreamExecutionEnvironment()
    expected = list(ride_events(15))
    loop = asyncio.get_running_loop()
    started = loop.time()
    out = await env.from_source(TaxiRideSource(15, rate=200)).execute_and_collect()
    elapsed = loop.time() - started
    assert out == expected
    # the first event is free, each further one waits 1/200 s
    assert elapsed >= 0.95 * (len(expected) - 1) / 200


async def test_rate_limits_the_fare_source() -> None:
    env = StreamExecutionEnvironment()
    loop = asyncio.get_running_loop()
    started = loop.time()
    out = await env.from_source(TaxiFareSource(20, rate=200)).execute_and_collect()
    elapsed = loop.time() - started
    assert out == list(fare_events(20))
    assert elapsed >= 0.095 * 0.95


async def test_unlimited_source_is_not_throttled() -> None:
    env = StreamExecutionEnvironment()
    loop = asyncio.get_running_loop()
    started = loop.time()
    out = await env.from_source(TaxiFareSource(2000)).execute_and_collect()
    assert len(out) == 2000
    assert loop.time() - started < 5.0
