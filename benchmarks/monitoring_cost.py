"""What monitoring costs a running job: throughput with and without a scraped monitor.

Run from the repository root::

    python -m benchmarks.monitoring_cost [--events 400000] [--repeats 5] [--interval 0.1]

The job: an unthrottled generator (parallelism 2), a map, ``key_by`` and
``reduce`` over 1,000 keys, into a sink that drops records. Each round runs it
once plain and once with a :class:`~flowactors.monitoring.MonitoringServer`
whose ``/metrics`` and ``/api/job`` are fetched every ``--interval`` seconds
(Prometheus usually scrapes every 15 s), alternating so that machine noise hits
both alike. Prints the median records/s of each and the difference; writes
``benchmarks/monitoring_cost.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp

from flowactors import StreamExecutionEnvironment
from flowactors.api.environment import run_blocking
from flowactors.monitoring import MonitoringServer
from flowactors.spi import Sink, SinkWriter, SinkWriterContext


class _Drop(SinkWriter[Any]):
    async def write(self, values: list[Any], timestamps: list[int | None] | None) -> None:
        pass


class DropSink(Sink[Any]):
    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        return _Drop()


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return (a[0], a[1] + b[1])


async def one_run(events: int, monitored: bool, interval: float) -> tuple[float, int]:
    env = StreamExecutionEnvironment(parallelism=2)
    (
        env.from_generator(lambda i: (i % 1000, i), count=events)
        .map(lambda t: (t[0], 1))
        .key_by(lambda t: t[0])
        .reduce(_add)
        .sink_to(DropSink())
    )
    started = time.perf_counter()
    client = await env.execute_async("bench")
    scrapes = 0
    if not monitored:
        await client.wait()
        return events / (time.perf_counter() - started), scrapes
    server = MonitoringServer(client, port=0)
    await server.start()
    waiter = asyncio.ensure_future(client.wait())
    try:
        async with aiohttp.ClientSession() as http:
            while not waiter.done():
                for path in ("/metrics", "/api/job"):
                    async with http.get(server.url + path) as response:
                        await response.read()
                scrapes += 1
                await asyncio.wait([waiter], timeout=interval)
        await waiter
        return events / (time.perf_counter() - started), scrapes
    finally:
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--out", default="benchmarks/monitoring_cost.json")
    args = parser.parse_args()
    plain: list[float] = []
    monitored: list[float] = []
    scrapes: list[int] = []
    run_blocking(one_run(args.events // 10, False, args.interval))  # warm up
    for _ in range(args.repeats):
        plain.append(run_blocking(one_run(args.events, False, args.interval))[0])
        rate, n = run_blocking(one_run(args.events, True, args.interval))
        monitored.append(rate)
        scrapes.append(n)
    p, m = statistics.median(plain), statistics.median(monitored)
    cost = (p - m) / p * 100
    print(f"plain      {p:>12,.0f} records/s")
    print(f"monitored  {m:>12,.0f} records/s  ({statistics.median(scrapes)} scrapes a run)")
    print(f"cost       {cost:>11.1f} %")
    Path(args.out).write_text(
        json.dumps(
            {
                "events": args.events,
                "interval_s": args.interval,
                "plain": plain,
                "monitored": monitored,
                "scrapes": scrapes,
                "cost_percent": cost,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
