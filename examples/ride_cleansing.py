"""Lab 1 of Flink's hands-on training, ride cleansing: keep the rides that stay inside NYC.

The taxi ride stream has START and END events of rides all over the area around New York City.
This job keeps only the events of rides that both start and end inside the city's bounding box
(:func:`examples.taxi.is_in_nyc`, edges included); each event carries both locations, so the
START and the END event of a ride are kept or dropped together.

Run it with ``python -m examples.ride_cleansing [--rides N] [--parallelism P] [--rate R]``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from examples.taxi import TaxiRide, TaxiRideSource, is_in_nyc
from flowactors import DataStream, StreamExecutionEnvironment

__all__ = ["build", "main", "starts_and_ends_in_nyc"]


def starts_and_ends_in_nyc(ride: TaxiRide) -> bool:
    """Whether ``ride`` starts and ends inside New York City."""
    return is_in_nyc(ride.start_lon, ride.start_lat) and is_in_nyc(ride.end_lon, ride.end_lat)


def build(rides: DataStream[TaxiRide]) -> DataStream[TaxiRide]:
    """The ride events of ``rides`` whose rides start and end in NYC."""
    return rides.filter(starts_and_ends_in_nyc).name("NYC filter")


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.ride_cleansing", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rides", type=int, default=10_000, help="rides to generate")
    parser.add_argument("--parallelism", type=int, default=2, help="default parallelism")
    parser.add_argument("--rate", type=float, default=None, help="ride events per second")
    args = parser.parse_args(argv)
    if args.rides < 1:
        parser.error("--rides must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    env = StreamExecutionEnvironment(parallelism=args.parallelism)
    rides = env.from_source(TaxiRideSource(max_rides=args.rides, rate=args.rate), name="rides")
    kept = asyncio.run(build(rides).execute_and_collect("ride cleansing"))

    kept.sort(key=lambda ride: (ride.ride_id, not ride.is_start))
    starts = sum(ride.is_start for ride in kept)
    rides_kept = len({ride.ride_id for ride in kept})
    print(f"Ride cleansing: {rides_kept:,} of {args.rides:,} rides start and end in NYC")
    print(f"  kept {len(kept):,} ride events: {starts:,} START, {len(kept) - starts:,} END")
    for ride in kept[:5]:
        kind = "START" if ride.is_start else "END  "
        print(
            f"  ride {ride.ride_id:>6} {kind} from ({ride.start_lon:.4f}, {ride.start_lat:.4f})"
            f" to ({ride.end_lon:.4f}, {ride.end_lat:.4f})"
        )
    if len(kept) > 5:
        print(f"  ... and {len(kept) - 5:,} more")


if __name__ == "__main__":
    main()
