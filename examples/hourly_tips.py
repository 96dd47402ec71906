"""Lab 3 of Flink's hands-on training, hourly tips: which driver earned the most tips each hour.

Fares are in order of their event time (``start_time``), so monotonous watermarks fit
(:data:`FARE_WATERMARKS`). Per driver, the tips are summed in one-hour tumbling event-time
windows (a window covers ``[start, end)``: a fare exactly on the hour belongs to the hour that
begins then); each result is stamped with its window's last millisecond, so the second,
all-driver window of the same hour receives it and keeps the largest total. The output is
``(window_end_ms, driver_id, total_tips)`` per hour.

Ties: Flink's solution keeps whichever of the tied drivers reached the all-window first, which
depends on timing when the per-driver windows run in parallel. Here the driver with the smaller
id wins a tie, so the answer does not depend on parallelism.

Run it with ``python -m examples.hourly_tips [--rides N] [--parallelism P] [--rate R]``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from examples.taxi import BEGINNING_MS, MS_BETWEEN_RIDES, TaxiFare, TaxiFareSource
from flowactors import (
    AggregateFunction,
    Collector,
    DataStream,
    ProcessWindowContext,
    ProcessWindowFunction,
    StreamExecutionEnvironment,
    WatermarkStrategy,
)
from flowactors.windows import TimeWindow, TumblingEventTimeWindows

__all__ = ["FARE_WATERMARKS", "HOUR", "HourlyTips", "SumOfTips", "build", "larger", "main"]

HOUR = timedelta(hours=1)

#: Event time of a fare is its ``start_time``; the fare stream is in order.
FARE_WATERMARKS: WatermarkStrategy[TaxiFare] = (
    WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(
        lambda fare, timestamp: fare.start_time
    )
)

#: ``(window_end_ms, driver_id, total_tips)``
Tips = tuple[int, int, float]


class SumOfTips(AggregateFunction[TaxiFare, float, float]):
    """The sum of the tips of a window's fares, kept as one number while the window is open."""

    def create_accumulator(self) -> float:
        return 0.0

    def add(self, value: TaxiFare, accumulator: float) -> float:
        return accumulator + value.tip

    def get_result(self, accumulator: float) -> float:
        return accumulator

    def merge(self, a: float, b: float) -> float:
        return a + b


class HourlyTips(ProcessWindowFunction[float, Tips, int]):
    """Labels a driver's sum of tips with the end of its window and the driver id."""

    def process(
        self,
        key: int,
        context: ProcessWindowContext[TimeWindow],
        elements: Iterable[float],
        out: Collector[Tips],
    ) -> None:
        for total in elements:
            out.collect((context.window.end, key, total))


def larger(a: Tips, b: Tips) -> Tips:
    """The larger total of tips; the smaller driver id on a tie."""
    if b[2] > a[2] or (b[2] == a[2] and b[1] < a[1]):
        return b
    return a


def build(fares: DataStream[TaxiFare]) -> DataStream[Tips]:
    """The top driver per hour, as ``(window_end_ms, driver_id, total_tips)``.

    ``fares`` must carry event timestamps (``start_time``) and watermarks, e.g. from
    ``from_source(..., FARE_WATERMARKS)`` or ``assign_timestamps_and_watermarks(FARE_WATERMARKS)``.
    """
    per_driver = (
        fares.key_by(lambda fare: fare.driver_id)
        .window(TumblingEventTimeWindows.of(HOUR))
        .aggregate(SumOfTips(), HourlyTips())
        .name("tips per driver and hour")
    )
    return (
        per_driver.window_all(TumblingEventTimeWindows.of(HOUR))
        .reduce(larger)
        .name("top driver per hour")
    )


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.hourly_tips", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rides", type=int, default=10_000, help="fares to generate")
    parser.add_argument("--parallelism", type=int, default=2, help="default parallelism")
    parser.add_argument("--rate", type=float, default=None, help="fares per second")
    args = parser.parse_args(argv)
    if args.rides < 1:
        parser.error("--rides must be at least 1")
    return args


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    env = StreamExecutionEnvironment(parallelism=args.parallelism)
    fares = env.from_source(
        TaxiFareSource(max_rides=args.rides, rate=args.rate), FARE_WATERMARKS, name="fares"
    )
    hours = asyncio.run(build(fares).execute_and_collect("hourly tips"))

    hours.sort()
    hour_ms = int(HOUR.total_seconds() * 1000)
    print(f"Hourly tips: the top driver of each of {len(hours):,} hours ({args.rides:,} fares)")
    last_fare = BEGINNING_MS + MS_BETWEEN_RIDES * args.rides
    for end, driver, total in hours:
        partial = f"  (fares end at {_time(last_fare)[-5:]})" if end - 1 > last_fare else ""
        print(
            f"  {_time(end - hour_ms)} - {_time(end)[-5:]} UTC  driver {driver}  "
            f"${total:,.2f}{partial}"
        )
    if hours:
        end, driver, total = max(hours, key=lambda tips: tips[2])
        print(f"Best hour: driver {driver} with ${total:,.2f} in the hour to {_time(end)} UTC")


if __name__ == "__main__":
    main()
