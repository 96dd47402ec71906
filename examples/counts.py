"""A small endless job for ``flowactors run``: counts of generated events per key.

    flowactors run examples.counts:build --parallelism 2 --checkpoint-dir /tmp/counts \\
        --monitor 127.0.0.1:8081

``COUNTS_RATE`` (events per second, default 1000), ``COUNTS_KEYS`` (default 10)
and ``COUNTS_EVENTS`` (default: endless) tune it. The running count of every key
is the keyed state ``value`` of the operator with uid ``counts`` (the state of
built-in aggregations):
``flowactors state read <savepoint> --uid counts --state value`` prints it.
"""

from __future__ import annotations

import os

from flowactors import StreamExecutionEnvironment

KEYS = int(os.environ.get("COUNTS_KEYS", "10"))
RATE = float(os.environ.get("COUNTS_RATE", "1000"))
EVENTS = int(os.environ["COUNTS_EVENTS"]) if os.environ.get("COUNTS_EVENTS") else None


def event(i: int) -> tuple[str, int]:
    return (f"key-{i % KEYS}", 1)


def build(env: StreamExecutionEnvironment) -> None:
    (
        env.from_generator(event, count=EVENTS, rate=RATE, name="Events")
        .uid("events")
        .key_by(lambda e: e[0])
        .sum(1)
        .name("Counts")
        .uid("counts")
        .filter(lambda e: e[1] % 1000 == 0)
        .name("Every thousandth")
        .print()
    )
