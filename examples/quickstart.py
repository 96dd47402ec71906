"""Quickstart: running statistics per sensor, with bad readings sent to a side output.

A generator stands in for a sensor feed (no external services needed). The job
drops readings without a value, routes out-of-range ones to a side output, and
keeps running statistics per sensor — at parallelism 2, so ``key_by`` really
repartitions between two keyed actors.

Run it with ``make demo`` (or ``python examples/quickstart.py``).
"""

from __future__ import annotations

import random
from typing import Any

from flowactors import (
    Collector,
    Context,
    DataStream,
    OutputTag,
    ProcessFunction,
    StreamExecutionEnvironment,
)

OUT_OF_RANGE: OutputTag[dict[str, Any]] = OutputTag("out-of-range")


def reading(i: int) -> dict[str, Any]:
    rnd = random.Random(i)
    value = None if i % 17 == 0 else round(rnd.gauss(20.0, 8.0), 1)
    return {"sensor": f"sensor-{i % 5}", "seq": i, "celsius": value}


class Validate(ProcessFunction[dict[str, Any], dict[str, Any]]):
    def process_element(
        self, value: dict[str, Any], ctx: Context, out: Collector[dict[str, Any]]
    ) -> None:
        if -10.0 <= value["celsius"] <= 40.0:
            out.collect(value)
        else:
            ctx.output(OUT_OF_RANGE, value)


Stats = tuple[str, int, float, float, int]


def combine(a: Stats, b: Stats) -> Stats:
    """(sensor, readings, max, sum, last seq) of two partial statistics."""
    return (a[0], a[1] + b[1], max(a[2], b[2]), a[3] + b[3], b[4])


def main() -> None:
    env = StreamExecutionEnvironment(parallelism=2)
    readings = env.from_generator(reading, count=200).name("sensor feed")
    valid = readings.filter(lambda r: r["celsius"] is not None).process(Validate()).name("validate")
    # (sensor, readings, max, sum, last seq), reduced per sensor as readings arrive.
    stats: DataStream[Any] = (
        valid.map(lambda r: (r["sensor"], 1, r["celsius"], r["celsius"], r["seq"]))
        .key_by(lambda t: t[0])
        .reduce(combine)
        .name("stats per sensor")
    )
    stats.filter(lambda s: s[4] >= 190).map(
        lambda s: (
            f"{s[0]} after reading #{s[4]}: {s[1]} readings, "
            f"max {s[2]:.1f} C, mean {s[3] / s[1]:.1f} C"
        )
    ).print("stats")
    valid.get_side_output(OUT_OF_RANGE).map(
        lambda r: f"{r['sensor']} reading #{r['seq']} out of range: {r['celsius']} C"
    ).print("alert")
    result = env.execute_blocking("quickstart")
    print(f"job {result.job_name!r} finished in {result.net_runtime_ms:.0f} ms")


if __name__ == "__main__":
    main()
