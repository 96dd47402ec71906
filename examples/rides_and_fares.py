"""Lab 2 of Flink's hands-on training, rides and fares: enrich each ride with its fare.

Two streams, the rides' START events and the fares, are keyed by ``ride_id`` and connected, so
that a ride and its fare meet in the same subtask whichever comes first. :class:`Enrichment`
keeps the first of the two in keyed state until the other arrives, then emits the pair and
clears the state: state only ever holds rides or fares still waiting for their partner.

Run it with ``python -m examples.rides_and_fares [--rides N] [--parallelism P] [--rate R]``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import NamedTuple

from examples.taxi import TaxiFare, TaxiFareSource, TaxiRide, TaxiRideSource
from flowactors import (
    Collector,
    DataStream,
    KeyedContext,
    KeyedCoProcessFunction,
    RuntimeContext,
    StreamExecutionEnvironment,
    ValueStateDescriptor,
)

__all__ = ["Enrichment", "RideAndFare", "build", "main"]


class RideAndFare(NamedTuple):
    """A ride's START event with its fare (a tuple: it equals ``(ride, fare)``)."""

    ride: TaxiRide
    fare: TaxiFare


class Enrichment(KeyedCoProcessFunction[int, TaxiRide, TaxiFare, RideAndFare]):
    """Pairs the ride (input 1) and the fare (input 2) of each ride id, in either order."""

    def open(self, ctx: RuntimeContext) -> None:
        self.ride = ctx.get_state(ValueStateDescriptor[TaxiRide]("saved ride"))
        self.fare = ctx.get_state(ValueStateDescriptor[TaxiFare]("saved fare"))

    def process_element1(
        self, ride: TaxiRide, ctx: KeyedContext[int], out: Collector[RideAndFare]
    ) -> None:
        fare = self.fare.value()
        if fare is None:
            self.ride.update(ride)
        else:
            self.fare.clear()
            out.collect(RideAndFare(ride, fare))

    def process_element2(
        self, fare: TaxiFare, ctx: KeyedContext[int], out: Collector[RideAndFare]
    ) -> None:
        ride = self.ride.value()
        if ride is None:
            self.fare.update(fare)
        else:
            self.ride.clear()
            out.collect(RideAndFare(ride, fare))


def build(rides: DataStream[TaxiRide], fares: DataStream[TaxiFare]) -> DataStream[RideAndFare]:
    """One :class:`RideAndFare` per ride id that has both a START event and a fare.

    END events are dropped; a ride or fare whose partner never arrives yields nothing.
    """
    starts = rides.filter(lambda ride: ride.is_start).name("START events")
    return (
        starts.key_by(lambda ride: ride.ride_id)
        .connect(fares.key_by(lambda fare: fare.ride_id))
        .process(Enrichment())
        .name("enrichment")
        .uid("enrichment")
    )


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.rides_and_fares", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rides", type=int, default=10_000, help="rides (and fares) to generate")
    parser.add_argument("--parallelism", type=int, default=2, help="default parallelism")
    parser.add_argument("--rate", type=float, default=None, help="events per second per source")
    args = parser.parse_args(argv)
    if args.rides < 1:
        parser.error("--rides must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    env = StreamExecutionEnvironment(parallelism=args.parallelism)
    rides = env.from_source(TaxiRideSource(max_rides=args.rides, rate=args.rate), name="rides")
    fares = env.from_source(TaxiFareSource(max_rides=args.rides, rate=args.rate), name="fares")
    pairs = asyncio.run(build(rides, fares).execute_and_collect("rides and fares"))

    pairs.sort(key=lambda pair: pair.ride.ride_id)
    total = sum(pair.fare.total_fare for pair in pairs)
    tips = sum(pair.fare.tip for pair in pairs)
    by_card = sum(pair.fare.payment_type == "CARD" for pair in pairs)
    print(f"Rides and fares: {len(pairs):,} of {args.rides:,} rides joined with their fares")
    print(f"  fares ${total:,.2f} in total, of which tips ${tips:,.2f}; {by_card:,} paid by card")
    for ride, fare in pairs[:5]:
        print(
            f"  ride {ride.ride_id:>6}: driver {ride.driver_id}, {ride.passenger_cnt} passenger(s),"
            f" {fare.payment_type} ${fare.total_fare:.2f} (tip ${fare.tip:.2f})"
        )
    if len(pairs) > 5:
        print(f"  ... and {len(pairs) - 5:,} more")


if __name__ == "__main__":
    main()
