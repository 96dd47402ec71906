"""The taxi data generators of Flink's hands-on training, bit for bit, and flowactors sources.

This module owns how the data is made: the per-ride values, each derived from ``ride_id`` alone
(:func:`ride_start`, :func:`ride_end`, :func:`fare`); the ride stream in the training
generator's deliberately out-of-order sequence (:func:`ride_events`) and the in-order fare
stream (:func:`fare_events`); and the sources :class:`TaxiRideSource` and
:class:`TaxiFareSource` that feed those streams into a job, optionally at a fixed rate.

Every ride value comes from ``java.util.Random`` seeded with the ride id (the end coordinates
with ``ride_id + 42``), drawing Gaussians until one lands in the allowed range. A fresh generator
is seeded for every field, so all fields of a ride read the same Gaussian sequence from its
start; we compute that sequence once per seed and let each field take what it needs. Because the
end coordinates of ride ``r`` are the start coordinates of ride ``r + 42``, the streams keep the
next 42 rides' sequences at hand rather than compute each one twice.
"""

from __future__ import annotations

import asyncio
import math
import struct
from collections import deque
from collections.abc import Callable, Iterator
from itertools import islice
from typing import TypeVar

from examples.taxi.java_random import ADDEND, MASK, MULTIPLIER, JavaRandom, fdlibm_log, scramble
from examples.taxi.records import (
    LAT_NORTH,
    LAT_SOUTH,
    LON_EAST,
    LON_WEST,
    TaxiFare,
    TaxiRide,
    new_taxi_ride,
)
from flowactors.spi import (
    Boundedness,
    InputStatus,
    ReaderOutput,
    Source,
    SourceReader,
    SourceReaderContext,
)

__all__ = [
    "BEGINNING_MS",
    "MS_BETWEEN_RIDES",
    "TaxiFareSource",
    "TaxiRideSource",
    "fare",
    "fare_events",
    "ride_end",
    "ride_events",
    "ride_start",
    "rides_within",
]

#: Event time of ride 0's start, 2020-01-01T12:00:00Z, in epoch milliseconds.
BEGINNING_MS = 1_577_880_000_000
#: Ride ``n`` starts ``n`` times this after :data:`BEGINNING_MS`.
MS_BETWEEN_RIDES = 20_000
_FIRST_DRIVER_ID = 2_013_000_000
_NUMBER_OF_DRIVERS = 200
_END_SEED_OFFSET = 42  # the end coordinates of ride r are drawn from seed r + 42
_BATCH = 5  # rides per step of the ride stream
_INT_MAX = (1 << 31) - 1
_DOUBLE_UNIT = 2.0**-53

_FLOAT32 = struct.Struct("f")
_pack_f32 = _FLOAT32.pack
_unpack_f32 = _FLOAT32.unpack


def _f32(x: float) -> float:
    """``x`` rounded to the nearest float32 (what a Java ``(float)`` cast does)."""
    return float(_unpack_f32(_pack_f32(x))[0])


def _float_range(low: float, high: float) -> tuple[float, float, float, float]:
    """``(min, max, mean, stddev)`` of a coordinate, in float32 like the Java code."""
    lo = _f32(low - 0.1)  # (float) (SOUTH - 0.1): double arithmetic
    hi = _f32(high + _f32(0.1))  # (float) (NORTH + 0.1F): 0.1F widened to double
    return lo, hi, _f32(_f32(lo + hi) / 2.0), _f32(_f32(hi - lo) / 8.0)


_LON = _float_range(LON_WEST, LON_EAST)
_LAT = _float_range(LAT_SOUTH, LAT_NORTH)
# aLong(min, max): mean (min + max) / 2 and stddev (max - min) / 8, in float32 (exact here)
_DURATION = (0, 600, 20.0, 40.0)
_TIP = (0, 60, 10.0, 15.0)
_PASSENGERS = (1, 4, _f32(5 / 2.0), _f32(3 / 8.0))
_TOLLS = (0, 5, _f32(5 / 2.0), _f32(5 / 8.0))


class _Gaussians:
    """The ``nextGaussian()`` sequence of ``new Random(seed)``, computed a pair at a time."""

    __slots__ = ("state", "values")

    def __init__(self, seed: int) -> None:
        self.state = scramble(seed)
        self.values: list[float] = []
        self.more()

    def more(self) -> None:
        """Append the next pair (one run of the polar method) to :attr:`values`."""
        state = self.state
        multiplier, addend, mask, unit = MULTIPLIER, ADDEND, MASK, _DOUBLE_UNIT
        while True:
            state = (state * multiplier + addend) & mask
            high = state >> 22  # next(26)
            state = (state * multiplier + addend) & mask
            v1 = 2.0 * (((high << 27) + (state >> 21)) * unit) - 1.0  # 2 * nextDouble() - 1
            state = (state * multiplier + addend) & mask
            high = state >> 22
            state = (state * multiplier + addend) & mask
            v2 = 2.0 * (((high << 27) + (state >> 21)) * unit) - 1.0
            s = v1 * v1 + v2 * v2
            if 0.0 < s < 1.0:
                break
        self.state = state
        scale = math.sqrt(-2.0 * fdlibm_log(s) / s)
        self.values += (v1 * scale, v2 * scale)


def _a_long(gaussians: _Gaussians, bounds: tuple[int, int, float, float]) -> int:
    """``Math.round(stddev * nextGaussian() + mean)``, redrawn until within ``[min, max]``."""
    low, high, mean, stddev = bounds
    values = gaussians.values
    i = 0
    while True:
        if i == len(values):
            gaussians.more()
        x = stddev * values[i] + mean
        value = math.floor(x)
        if x - value >= 0.5:  # Math.round rounds halves up; x - floor(x) is exact
            value += 1
        if low <= value <= high:
            return value
        i += 1


def _a_float(gaussians: _Gaussians, bounds: tuple[float, float, float, float]) -> float:
    """``(float) (stddev * nextGaussian()) + mean`` in float32, redrawn until within bounds."""
    low, high, mean, stddev = bounds
    values = gaussians.values
    pack = _pack_f32
    unpack = _unpack_f32
    i = 0
    while True:
        if i == len(values):
            gaussians.more()
        value: float = unpack(pack(unpack(pack(stddev * values[i]))[0] + mean))[0]
        if low <= value <= high:
            return value
        i += 1


def _driver_id(ride_id: int) -> int:
    """``2013000000 + new Random(ride_id).nextInt(200)``."""
    state = scramble(ride_id)
    while True:
        state = (state * MULTIPLIER + ADDEND) & MASK
        bits = state >> 17  # next(31)
        value = bits % _NUMBER_OF_DRIVERS
        if bits - value + _NUMBER_OF_DRIVERS - 1 <= _INT_MAX:
            return _FIRST_DRIVER_ID + value


def _coordinates(gaussians: _Gaussians) -> tuple[float, float]:
    """``(lon, lat)`` drawn from a seed's sequence (start of ride ``s``, end of ``s - 42``)."""
    return _a_float(gaussians, _LON), _a_float(gaussians, _LAT)


def _start_time(ride_id: int) -> int:
    return BEGINNING_MS + MS_BETWEEN_RIDES * ride_id


def _ride_pair(
    ride_id: int,
    gaussians: _Gaussians,
    start: tuple[float, float],
    end: tuple[float, float],
) -> tuple[TaxiRide, TaxiRide]:
    """The START and END events of a ride, given its seed's sequence and both coordinates."""
    duration = _a_long(gaussians, _DURATION)
    passengers = _a_long(gaussians, _PASSENGERS)
    driver = _driver_id(ride_id)
    start_time = _start_time(ride_id)
    start_lon, start_lat = start
    end_lon, end_lat = end
    return (
        new_taxi_ride(
            ride_id,
            True,
            start_time,
            start_lon,
            start_lat,
            end_lon,
            end_lat,
            passengers,
            driver,
            driver,
        ),
        new_taxi_ride(
            ride_id,
            False,
            start_time + 60_000 * duration,
            start_lon,
            start_lat,
            end_lon,
            end_lat,
            passengers,
            driver,
            driver,
        ),
    )


def _ride(ride_id: int) -> tuple[TaxiRide, TaxiRide]:
    gaussians = _Gaussians(ride_id)
    start = _coordinates(gaussians)
    end = _coordinates(_Gaussians(ride_id + _END_SEED_OFFSET))
    return _ride_pair(ride_id, gaussians, start, end)


def ride_start(ride_id: int) -> TaxiRide:
    """The START event of ride ``ride_id`` (what ``new TaxiRide(ride_id, true)`` makes)."""
    return _ride(ride_id)[0]


def ride_end(ride_id: int) -> TaxiRide:
    """The END event of ride ``ride_id`` (what ``new TaxiRide(ride_id, false)`` makes)."""
    return _ride(ride_id)[1]


def fare(ride_id: int) -> TaxiFare:
    """The fare of ride ``ride_id`` (what ``new TaxiFare(ride_id)`` makes)."""
    gaussians = _Gaussians(ride_id)
    duration = _a_long(gaussians, _DURATION)
    tip = _a_long(gaussians, _TIP)
    tolls = _a_long(gaussians, _TOLLS) if ride_id % 10 == 0 else 0
    driver = _driver_id(ride_id)
    return TaxiFare(
        ride_id,
        driver,
        driver,
        _start_time(ride_id),
        "CARD" if ride_id % 2 == 0 else "CASH",
        float(tip),
        float(tolls),
        _f32(3.0 + duration + tip + tolls),
    )


def rides_within(duration_ms: int) -> int:
    """How many rides start in the first ``duration_ms`` of event time (before
    ``BEGINNING_MS + duration_ms``, the bound of the training's ``TaxiFareGenerator.runFor``)."""
    return max(0, (duration_ms - 1) // MS_BETWEEN_RIDES)


def _ride_limit(max_rides: int | None, max_event_time_ms: int | None) -> int | None:
    if max_rides is not None and max_rides < 0:
        raise ValueError(f"max_rides must be >= 0, got {max_rides}")
    limits = [n for n in (max_rides, max_event_time_ms) if n is not None]
    if max_event_time_ms is not None:
        limits[-1] = rides_within(max_event_time_ms)
    return min(limits) if limits else None


def ride_events(
    max_rides: int | None = None,
    *,
    max_event_time_ms: int | None = None,
    drain_ends: bool = False,
) -> Iterator[TaxiRide]:
    """The training's ride stream: START and END events, out of order like the Java generator.

    In steps of five rides, it makes their START events, queues their END events, emits every
    queued END event no later than the latest start, then the five START events shuffled with
    ``Random(step * 5)``. The queue breaks ties between equal end times the way Java's
    ``PriorityQueue`` heap does.

    Endless unless bounded by ``max_rides`` and/or by ``max_event_time_ms`` (only rides that
    start before ``BEGINNING_MS + max_event_time_ms``). Bounded, it stops where the Java generator
    would be stopped after its step creating the last ride, leaving out events of later rides of
    that step: END events still queued never arrive (as with the stopped Java source), unless
    ``drain_ends`` emits them last, in queue order. With ``max_rides`` a multiple of five and no
    ``drain_ends``, the result is exactly a prefix of the endless stream.
    """
    limit = _ride_limit(max_rides, max_event_time_ms)
    # ahead[k]: the Gaussians and coordinates of seed ride_id + k, for k = 0 .. 42
    ahead: deque[tuple[_Gaussians, tuple[float, float]]] = deque()
    for seed in range(1, _END_SEED_OFFSET + 1):
        gaussians = _Gaussians(seed)
        ahead.append((gaussians, _coordinates(gaussians)))
    # java.util.PriorityQueue's binary heap of END events, keyed by event time
    keys: list[int] = []
    heap: list[TaxiRide] = []

    def poll() -> TaxiRide:
        result = heap[0]
        key = keys.pop()
        ride = heap.pop()
        n = len(heap)
        if n:
            k = 0
            half = n >> 1
            while k < half:  # sift down: the right child only if strictly smaller
                child = 2 * k + 1
                right = child + 1
                if right < n and keys[child] > keys[right]:
                    child = right
                if key <= keys[child]:
                    break
                keys[k] = keys[child]
                heap[k] = heap[child]
                k = child
            keys[k] = key
            heap[k] = ride
        return result

    step = 0
    while limit is None or step < limit:
        starts: list[TaxiRide] = []
        for ride_id in range(step + 1, step + _BATCH + 1):
            gaussians = _Gaussians(ride_id + _END_SEED_OFFSET)
            end_coordinates = _coordinates(gaussians)
            ahead.append((gaussians, end_coordinates))
            own, start_coordinates = ahead.popleft()
            start, end = _ride_pair(ride_id, own, start_coordinates, end_coordinates)
            starts.append(start)
            # offer: sift up while strictly smaller than the parent
            key = end.event_time
            k = len(heap)
            keys.append(key)
            heap.append(end)
            while k > 0:
                parent = (k - 1) >> 1
                if key >= keys[parent]:
                    break
                keys[k] = keys[parent]
                heap[k] = heap[parent]
                k = parent
            keys[k] = key
            heap[k] = end
        latest_start = starts[-1].event_time  # start times grow with the ride id
        # (Java would fail on an empty queue here; long rides keep it from emptying in practice)
        while keys and keys[0] <= latest_start:
            ride = poll()
            if limit is None or ride.ride_id <= limit:
                yield ride
        JavaRandom(step).shuffle(starts)
        if limit is None or step + _BATCH <= limit:
            yield from starts
        else:
            yield from (ride for ride in starts if ride.ride_id <= limit)
        step += _BATCH
    if drain_ends:
        while keys:
            ride = poll()
            if limit is None or ride.ride_id <= limit:
                yield ride


def fare_events(
    max_rides: int | None = None, *, max_event_time_ms: int | None = None
) -> Iterator[TaxiFare]:
    """The training's fare stream: the fares of rides 1, 2, 3, … in order.

    Endless unless bounded by ``max_rides`` and/or by ``max_event_time_ms`` (only fares whose
    ``start_time`` is before ``BEGINNING_MS + max_event_time_ms``, like ``runFor``).
    """
    limit = _ride_limit(max_rides, max_event_time_ms)
    ride_id = 1
    while limit is None or ride_id <= limit:
        yield fare(ride_id)
        ride_id += 1


# -- sources ------------------------------------------------------------------------------------


E = TypeVar("E")


def _check_rate(rate: float | None) -> None:
    if rate is not None and not rate > 0:
        raise ValueError(f"rate must be > 0 events/s, got {rate}")


class _EventReader(SourceReader[E]):
    """Hands out a generated stream in batches stamped with event times, at most ``rate``/s."""

    def __init__(
        self,
        events: Iterator[E],
        time_of: Callable[[E], int],
        rate: float | None,
        batch_size: int,
    ) -> None:
        self.events = events
        self.time_of = time_of
        self.rate = rate
        self.batch_size = batch_size
        self.emitted = 0
        self.started = 0.0

    async def start(self) -> None:
        self.started = asyncio.get_running_loop().time()

    async def poll_next(self, output: ReaderOutput[E]) -> InputStatus:
        n = self.batch_size
        if self.rate is not None:
            elapsed = asyncio.get_running_loop().time() - self.started
            n = min(n, int(elapsed * self.rate) + 1 - self.emitted)
            if n <= 0:
                return InputStatus.NOTHING_AVAILABLE
        batch = list(islice(self.events, n))
        self.emitted += len(batch)
        if batch:
            time_of = self.time_of
            timestamps: list[int | None] = [time_of(event) for event in batch]
            await output.collect_batch(batch, timestamps)
        return InputStatus.MORE_AVAILABLE if len(batch) == n else InputStatus.END_OF_INPUT

    async def is_available(self) -> None:
        assert self.rate is not None
        due = self.started + self.emitted / self.rate
        await asyncio.sleep(max(0.0, due - asyncio.get_running_loop().time()))


def _ride_time(ride: TaxiRide) -> int:
    return ride.event_time


def _fare_time(fare: TaxiFare) -> int:
    return fare.start_time


class TaxiRideSource(Source[TaxiRide]):
    """The ride stream of :func:`ride_events` as a source, timestamped with event times.

    ``rate`` limits it to that many events per second (``None``: as fast as possible); the
    bounds are those of :func:`ride_events` (none: endless). It is one ordered sequence, so it
    runs as a single subtask.
    """

    max_parallelism = 1

    def __init__(
        self,
        max_rides: int | None = None,
        rate: float | None = None,
        *,
        max_event_time_ms: int | None = None,
        drain_ends: bool = False,
    ) -> None:
        limit = _ride_limit(max_rides, max_event_time_ms)
        _check_rate(rate)
        self.max_rides = max_rides
        self.rate = rate
        self.max_event_time_ms = max_event_time_ms
        self.drain_ends = drain_ends
        self.boundedness = (
            Boundedness.CONTINUOUS_UNBOUNDED if limit is None else Boundedness.BOUNDED
        )

    def create_reader(self, context: SourceReaderContext) -> SourceReader[TaxiRide]:
        events = ride_events(
            self.max_rides, max_event_time_ms=self.max_event_time_ms, drain_ends=self.drain_ends
        )
        return _EventReader(events, _ride_time, self.rate, context.batch_size)


class TaxiFareSource(Source[TaxiFare]):
    """The fare stream of :func:`fare_events` as a source, timestamped with ``start_time``.

    ``rate`` limits it to that many fares per second (``None``: as fast as possible); the
    bounds are those of :func:`fare_events` (none: endless). It runs as a single subtask.
    """

    max_parallelism = 1

    def __init__(
        self,
        max_rides: int | None = None,
        rate: float | None = None,
        *,
        max_event_time_ms: int | None = None,
    ) -> None:
        limit = _ride_limit(max_rides, max_event_time_ms)
        _check_rate(rate)
        self.max_rides = max_rides
        self.rate = rate
        self.max_event_time_ms = max_event_time_ms
        self.boundedness = (
            Boundedness.CONTINUOUS_UNBOUNDED if limit is None else Boundedness.BOUNDED
        )

    def create_reader(self, context: SourceReaderContext) -> SourceReader[TaxiFare]:
        events = fare_events(self.max_rides, max_event_time_ms=self.max_event_time_ms)
        return _EventReader(events, _fare_time, self.rate, context.batch_size)
