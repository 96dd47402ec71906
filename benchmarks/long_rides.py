"""Long ride alerts over generated taxi rides: throughput, peak memory, state size over time.

Run from the repository root::

    python -m benchmarks.long_rides                  # 1,000,000 rides, writes benchmarks/long_rides.json
    python -m benchmarks.long_rides --rides 100000

The job is ``examples/long_ride_alerts.py`` (60 s bounded out-of-orderness,
one keyed event-time timer per ride) reading ``TaxiRideSource``. As a
baseline, the same process first only *generates* the same ride events in a
plain loop, so the ratio says how much the job adds to producing its input.
While the job runs, the keyed state entries are sampled through the job's
metrics: they must stay flat (rides that ended leave nothing behind) instead
of growing with the number of rides.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from pathlib import Path
from typing import Any

from examples.long_ride_alerts import RIDE_WATERMARKS, build
from examples.taxi import TaxiRideSource, ride_events
from flowactors import StreamExecutionEnvironment
from flowactors.spi import Sink, SinkWriter, SinkWriterContext

DEFAULT_JSON = Path(__file__).resolve().parent / "long_rides.json"


class CountingSink(Sink[Any]):
    max_parallelism = 1

    def __init__(self) -> None:
        self.count = 0

    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        sink = self

        class Writer(SinkWriter[Any]):
            async def write(self, values: list[Any], timestamps: list[int | None] | None) -> None:
                sink.count += len(values)

        return Writer()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run_job(rides: int, parallelism: int) -> dict[str, Any]:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    stream = env.from_source(TaxiRideSource(max_rides=rides), RIDE_WATERMARKS, name="rides")
    sink = CountingSink()
    build(stream).sink_to(sink)
    start = time.perf_counter()
    client = await env.execute_async("long-ride-alerts-bench")
    samples: list[tuple[float, int]] = []
    while client.status.value in ("CREATED", "RUNNING"):
        metrics = client.metrics()
        entries = sum(
            int(value)
            for t in metrics.tasks
            for name, value in t.user_metrics.items()
            if name.endswith(".numKeyedStateEntries")
        )
        samples.append((round(time.perf_counter() - start, 2), entries))
        try:
            await asyncio.wait_for(client.wait(), 0.5)
        except TimeoutError:
            continue
    await client.wait()
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "alerts": sink.count, "state_samples": samples}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rides", type=int, default=1_000_000)
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    events = sum(1 for _ in ride_events(args.rides))
    generate_s = time.perf_counter() - start
    rss_before = peak_rss_mb()

    job = asyncio.run(run_job(args.rides, args.parallelism))
    rss_after = peak_rss_mb()
    entries = [e for _, e in job["state_samples"]]
    result = {
        "rides": args.rides,
        "events": events,
        "parallelism": args.parallelism,
        "generate_only_s": round(generate_s, 2),
        "generate_only_events_per_s": round(events / generate_s),
        "job_s": round(job["seconds"], 2),
        "job_events_per_s": round(events / job["seconds"]),
        "ratio_to_generation": round(generate_s / job["seconds"], 3),
        "alerts": job["alerts"],
        "peak_rss_mb_before_job": round(rss_before, 1),
        "peak_rss_mb": round(rss_after, 1),
        "state_entries_max": max(entries, default=0),
        "state_entries_samples": job["state_samples"],
    }
    print(
        f"{args.rides:,} rides ({events:,} events): generating alone {events / generate_s:,.0f} "
        f"events/s; the job {events / job['seconds']:,.0f} events/s "
        f"({generate_s / job['seconds']:.2f}x of generation alone); {job['alerts']:,} alerts"
    )
    print(
        f"peak RSS {rss_after:.0f} MB (before the job {rss_before:.0f} MB); keyed state entries "
        f"sampled every 0.5 s: max {result['state_entries_max']:,}, "
        f"last {entries[-1] if entries else 0:,}"
    )
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
