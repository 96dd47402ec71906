"""Lab 4 of Flink's hands-on training, long ride alerts: report rides that last over two hours.

The ride stream is out of order (an END event may even come before its START), so event time
comes with watermarks that allow 60 seconds of disorder (:data:`RIDE_WATERMARKS`). Keyed by
``ride_id``, :class:`AlertFunction` emits the id of every ride that lasts more than two hours,
as soon as it knows: when a ride's END shows it was longer than two hours, or when event time
reaches two hours after its START and no END has come (so a ride whose END never arrives is
reported too, at the latest when a bounded input ends). Each ride is reported at most once.

State never outlives a ride: a ride's first event is kept, with one event-time timer two hours
after it, until its other event arrives (the state and timer are then dropped) or the timer
fires. A START whose timer fires is reported and dropped. An END whose START has not come
within two hours of event time is dropped silently: its START either came long before (the ride
was reported by its timer, which dropped the START) or was lost.

Run it with
``python -m examples.long_ride_alerts [--rides N] [--parallelism P] [--rate R] [--drain-ends]``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from examples.taxi import TaxiRide, TaxiRideSource, ride_end, ride_start
from flowactors import (
    Collector,
    DataStream,
    KeyedContext,
    KeyedProcessFunction,
    OnTimerContext,
    RuntimeContext,
    StreamExecutionEnvironment,
    ValueStateDescriptor,
    WatermarkStrategy,
)

__all__ = ["AlertFunction", "RIDE_WATERMARKS", "TWO_HOURS_MS", "build", "main"]

TWO_HOURS_MS = 2 * 60 * 60 * 1000

#: Event time of a ride event is its ``event_time``; as in the training, a minute of disorder.
RIDE_WATERMARKS: WatermarkStrategy[TaxiRide] = WatermarkStrategy.for_bounded_out_of_orderness(
    timedelta(seconds=60)
).with_timestamp_assigner(lambda ride, timestamp: ride.event_time)


class AlertFunction(KeyedProcessFunction[int, TaxiRide, int]):
    """Emits the ``ride_id`` of each ride longer than two hours, once (keyed by ``ride_id``).

    A ride that lasts exactly two hours is not reported when its END arrives in time, as in
    Flink's solution (only a duration over two hours is too long); one whose END has not come
    when event time reaches two hours after its START is reported.
    """

    def open(self, ctx: RuntimeContext) -> None:
        self.first = ctx.get_state(ValueStateDescriptor[TaxiRide]("first event"))

    def process_element(self, ride: TaxiRide, ctx: KeyedContext[int], out: Collector[int]) -> None:
        timers = ctx.timer_service()
        first = self.first.value()
        if first is None:  # whichever event comes first waits for the other
            self.first.update(ride)
            timers.register_event_time_timer(ride.event_time + TWO_HOURS_MS)
            return
        if first.is_start == ride.is_start:  # a duplicate: not expected, and never reported
            return
        timers.delete_event_time_timer(first.event_time + TWO_HOURS_MS)
        self.first.clear()
        start, end = (ride, first) if ride.is_start else (first, ride)
        if end.event_time - start.event_time > TWO_HOURS_MS:
            out.collect(ride.ride_id)

    def on_timer(self, timestamp: int, ctx: OnTimerContext[int], out: Collector[int]) -> None:
        first = self.first.value()
        self.first.clear()
        if first is not None and first.is_start:  # two hours on, and no END yet
            out.collect(first.ride_id)


def build(rides: DataStream[TaxiRide]) -> DataStream[int]:
    """The ids of the rides that last more than two hours (or whose END never comes).

    ``rides`` must carry event timestamps and watermarks, e.g. from
    ``from_source(..., RIDE_WATERMARKS)`` or ``assign_timestamps_and_watermarks(RIDE_WATERMARKS)``.
    """
    return rides.key_by(lambda ride: ride.ride_id).process(AlertFunction()).name("long rides")


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.long_ride_alerts", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rides", type=int, default=10_000, help="rides to generate")
    parser.add_argument("--parallelism", type=int, default=2, help="default parallelism")
    parser.add_argument("--rate", type=float, default=None, help="ride events per second")
    parser.add_argument(
        "--drain-ends",
        action="store_true",
        help="let every ride's END arrive (by default the END events still due when the "
        "source stops never come, as when the training's generator is stopped)",
    )
    args = parser.parse_args(argv)
    if args.rides < 1:
        parser.error("--rides must be at least 1")
    return args


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    env = StreamExecutionEnvironment(parallelism=args.parallelism)
    source = TaxiRideSource(max_rides=args.rides, rate=args.rate, drain_ends=args.drain_ends)
    rides = env.from_source(source, RIDE_WATERMARKS, name="rides")
    alerts = asyncio.run(build(rides).execute_and_collect("long ride alerts"))

    alerts.sort()
    # What the alerted rides really were, from the generator (which derives a ride from its id).
    starts = {ride_id: ride_start(ride_id).event_time for ride_id in alerts}
    durations = {ride_id: ride_end(ride_id).event_time - starts[ride_id] for ride_id in alerts}
    long_ones = [ride_id for ride_id in alerts if durations[ride_id] > TWO_HOURS_MS]
    print(f"Long ride alerts: {len(alerts):,} of {args.rides:,} rides")
    print(f"  {len(long_ones):,} rides lasted more than two hours:")
    for ride_id in long_ones[:10]:
        ms = durations[ride_id]
        print(
            f"    ride {ride_id:>6}: started {_time(starts[ride_id])} UTC, "
            f"lasted {ms // 3_600_000} h {ms // 60_000 % 60:02d} min"
        )
    if len(long_ones) > 10:
        print(f"    ... and {len(long_ones) - 10:,} more")
    open_ones = len(alerts) - len(long_ones)
    print(f"  {open_ones:,} rides had not ended when the input stopped (their END never came)")


if __name__ == "__main__":
    main()
