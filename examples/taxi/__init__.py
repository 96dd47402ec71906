"""The taxi data of Apache Flink's hands-on training, generated bit for bit as the Java does.

This package re-exports the public names of its modules: the records (:mod:`.records`), the
generators and sources (:mod:`.generator`) and ``java.util.Random`` (:mod:`.java_random`).
"""

from examples.taxi.generator import (
    BEGINNING_MS,
    MS_BETWEEN_RIDES,
    TaxiFareSource,
    TaxiRideSource,
    fare,
    fare_events,
    ride_end,
    ride_events,
    ride_start,
    rides_within,
)
from examples.taxi.java_random import JavaRandom, fdlibm_log
from examples.taxi.records import (
    LAT_NORTH,
    LAT_SOUTH,
    LON_EAST,
    LON_WEST,
    TaxiFare,
    TaxiRide,
    is_in_nyc,
)

__all__ = [
    "BEGINNING_MS",
    "LAT_NORTH",
    "LAT_SOUTH",
    "LON_EAST",
    "LON_WEST",
    "MS_BETWEEN_RIDES",
    "JavaRandom",
    "TaxiFare",
    "TaxiFareSource",
    "TaxiRide",
    "TaxiRideSource",
    "fare",
    "fare_events",
    "fdlibm_log",
    "is_in_nyc",
    "ride_end",
    "ride_events",
    "ride_start",
    "rides_within",
]
