"""How responsive the event loop stays while flowactors works in it.

Run from the repository root::

    python -m benchmarks.loop_lag                 # 3 rounds
    python -m benchmarks.loop_lag --rounds 1 --keys 100000

One process, one run. A probe coroutine stands in for the embedding service:
it sleeps 1 ms in a loop and records how late it wakes up (the loop's
scheduling lag). It runs while

- (a) a Kafka source job catches up on 1,000,000 records (a broker is started
  with ``scripts/kafka.sh`` unless ``FLOWACTORS_KAFKA_BOOTSTRAP`` names one;
  ``--no-kafka`` skips it),
- (b) 200,000 keyed event-time windows fire at one watermark (one key per
  window, all in the same minute, fired by the final watermark),
- (c) a savepoint of 1,000,000 keys of in-memory keyed state is taken,

each with the default time slice and with slicing turned off (a slice of
10^9 ms), alternating round by round. It prints lag p50/p99/max per case and
the work's throughput with and without slicing (median of the rounds), and
the same lag counting only time the process spent on a CPU (the machine may be
shared: time it ran other processes is not the loop being held by the job), and
(d) two jobs sharing the loop — an ``async def`` enrichment through
``map_async`` (100 calls in flight, each awaiting once) and a CPU-heavy
windowed count — each one's throughput beside the other
as a share of its throughput alone. Everything goes to JSON as well
(``benchmarks/loop_lag_results.json``).

One file on purpose (a little over 500 lines): the cases share the probe and
must run in one process, one after the other, to be comparable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks._broker import kafka_broker
from flowactors import (
    AggregateFunction,
    ExecutionConfig,
    StreamExecutionEnvironment,
    WatermarkStrategy,
)
from flowactors.api.environment import JobClient, run_blocking
from flowactors.spi import (
    InputStatus,
    ReaderOutput,
    Sink,
    SinkWriter,
    SinkWriterContext,
    Source,
    SourceReader,
    SourceReaderContext,
)
from flowactors.windows import TumblingEventTimeWindows

REPO = Path(__file__).resolve().parents[1]
DEFAULT_JSON = Path(__file__).resolve().parent / "loop_lag_results.json"
SLICED = ExecutionConfig()
UNSLICED = ExecutionConfig(time_slice_ms=1e9)
TARGET_P99_MS = 10.0
TARGET_MAX_MS = 50.0
TARGET_COST = 0.05
TARGET_SHARE = 0.35


# -- the probe -----------------------------------------------------------------


class Probe:
    """Sleeps 1 ms in a loop and records each wake-up's lateness (seconds), and the
    pauses of the garbage collector's full collections meanwhile."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.cpu_lags: list[float] = []
        self.gc_pauses: list[float] = []
        self._gc_start = 0.0
        self._task: asyncio.Task[None] | None = None

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.gc_pauses.append(time.perf_counter() - self._gc_start)

    async def _run(self) -> None:
        clock, cpu = time.perf_counter, time.process_time
        while True:
            start, start_cpu = clock(), cpu()
            await asyncio.sleep(0.001)
            lag = max(0.0, clock() - start - 0.001)
            self.lags.append(lag)
            # The part of the lag the process spent on a CPU: what this process held the
            # loop for, without the time the (shared) machine ran something else.
            self.cpu_lags.append(min(lag, cpu() - start_cpu))

    def start(self) -> None:
        gc.callbacks.append(self._gc)
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> list[float]:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        gc.callbacks.remove(self._gc)
        return self.lags


def percentiles(lags: list[float]) -> dict[str, float]:
    if not lags:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "samples": 0}
    ordered = sorted(lags)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "p50_ms": round(pick(0.50) * 1000, 3),
        "p99_ms": round(pick(0.99) * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
        "samples": len(ordered),
    }


Measured = tuple[float, list[float], list[float], list[float]]


async def probed(work: Callable[[], Awaitable[float]]) -> Measured:
    """Run ``work`` (returns its throughput) with the probe beside it."""
    probe = Probe()
    probe.start()
    await asyncio.sleep(0)
    try:
        rate = await work()
    finally:
        lags = await probe.stop()
    return rate, lags, probe.cpu_lags, probe.gc_pauses


# -- pieces of jobs ------------------------------------------------------------


class Discard(Sink[Any]):
    def __init__(self) -> None:
        self.count = 0

    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        sink = self

        class Writer(SinkWriter[Any]):
            async def write(self, values: list[Any], timestamps: Any) -> None:
                sink.count += len(values)

        return Writer()


class HeldOpen(Source[tuple[int, int]]):
    """``(i, 1)`` for ``i`` in ``range(n)`` in batches, then idle until cancelled."""

    max_parallelism = 1

    def __init__(self, n: int) -> None:
        self.n = n

    def create_reader(self, context: SourceReaderContext) -> SourceReader[tuple[int, int]]:
        n, batch = self.n, context.batch_size

        class Reader(SourceReader[tuple[int, int]]):
            pos = 0

            async def poll_next(self, output: ReaderOutput[tuple[int, int]]) -> InputStatus:
                if self.pos < n:
                    end = min(n, self.pos + batch)
                    await output.collect_batch([(i, 1) for i in range(self.pos, end)])
                    self.pos = end
                    return InputStatus.MORE_AVAILABLE
                return InputStatus.NOTHING_AVAILABLE

            async def is_available(self) -> None:
                await asyncio.Event().wait()

        return Reader()


class Count(AggregateFunction[Any, int, int]):
    def create_accumulator(self) -> int:
        return 0

    def add(self, value: Any, accumulator: int) -> int:
        return accumulator + 1

    def get_result(self, accumulator: int) -> int:
        return accumulator

    def merge(self, a: int, b: int) -> int:
        return a + b


def one_minute(event: tuple[int, int], _: int | None) -> int:
    return event[1]


# -- (b) windows firing at one watermark -----------------------------------------


async def windows_firing(events: list[tuple[int, int]], config: ExecutionConfig) -> float:
    """Windows per second: one window per event filled, then fired by the final watermark."""
    keys = len(events)
    env = StreamExecutionEnvironment(config=config)
    sink = Discard()
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(one_minute)
    (
        env.from_collection(events)
        .assign_timestamps_and_watermarks(strategy)
        .key_by(lambda e: e[0])
        .window(TumblingEventTimeWindows.of(60_000))
        .aggregate(Count())
        .sink_to(sink)
    )
    start = time.perf_counter()
    await env.execute("windows")
    elapsed = time.perf_counter() - start
    assert sink.count == keys, sink.count
    return keys / elapsed


# -- (c) a savepoint of large in-memory state -------------------------------------


async def large_state_job(keys: int, config: ExecutionConfig, storage: Path) -> JobClient:
    env = StreamExecutionEnvironment(config=config)
    env.enable_checkpointing(3_600_000, storage=storage, resume="none")
    env.from_source(HeldOpen(keys), name="keys").key_by(lambda r: r[0]).sum(1).uid("sums").sink_to(
        Discard()
    )
    client = await env.execute_async("large-state")
    view = client.keyed_state("sums", "value")
    while len(view) < keys:
        await asyncio.sleep(0.05)
    return client


async def savepoint(client: JobClient, directory: Path, keys: int) -> float:
    """Keys per second of a savepoint (trigger to complete)."""
    start = time.perf_counter()
    await client.trigger_savepoint(directory)
    return keys / (time.perf_counter() - start)


# -- (a) Kafka catch-up ------------------------------------------------------------


async def fill_topic(bootstrap: str, records: int) -> str:
    from benchmarks.kafka_bench import create_topic, fill_input

    topic = await create_topic(bootstrap, f"loop-lag-{uuid.uuid4().hex[:8]}")
    await fill_input(bootstrap, topic, records)
    return topic


async def kafka_catch_up(
    bootstrap: str, topic: str, records: int, config: ExecutionConfig
) -> float:
    from flowactors_kafka import KafkaOffsetsInitializer, KafkaSource

    env = StreamExecutionEnvironment(config=config)
    sink = Discard()
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap)
        .set_topics(topic)
        .set_value_only_deserializer("json")
        .set_bounded(KafkaOffsetsInitializer.latest())
        .build()
    )
    env.from_source(source, name="kafka").key_by(lambda r: r["k"]).reduce(
        lambda a, b: {"k": a["k"], "v": a["v"] + b["v"]}
    ).sink_to(sink)
    start = time.perf_counter()
    await env.execute("kafka-catch-up")
    elapsed = time.perf_counter() - start
    assert sink.count == records, sink.count
    return records / elapsed


# -- (d) two jobs sharing the loop --------------------------------------------------


async def enrich(x: int) -> int:
    await asyncio.sleep(0)  # stands in for a lookup that awaits (a cache, a database)
    return x + 1


def enrichment_job(env: StreamExecutionEnvironment) -> None:
    env.from_generator(lambda i: i).map_async(enrich, capacity=100).sink_to(Discard())


def windowed_job(env: StreamExecutionEnvironment) -> None:
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(
        lambda e, _: e[1]
    )
    env.from_generator(lambda i: (i % 1000, i)).assign_timestamps_and_watermarks(strategy).key_by(
        lambda e: e[0]
    ).window(TumblingEventTimeWindows.of(10_000)).aggregate(Count()).sink_to(Discard())


def records_in(client: JobClient) -> int:
    return sum(t.records_in for t in client.metrics().tasks if "Source" in t.name)


async def rates(
    builders: list[Callable[[StreamExecutionEnvironment], None]], seconds: float
) -> list[float]:
    """Records per second of each job while they all run together for ``seconds``."""
    clients = []
    for i, build in enumerate(builders):
        env = StreamExecutionEnvironment()
        build(env)
        clients.append(await env.execute_async(f"share-{i}"))
    try:
        await asyncio.sleep(0.5)  # warm up
        before = [records_in(c) for c in clients]
        start = time.perf_counter()
        await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - start
        after = [records_in(c) for c in clients]
    finally:
        for c in clients:
            await c.cancel()
    return [(a - b) / elapsed for a, b in zip(after, before)]


# -- running --------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    what: str
    unit: str
    rates: dict[str, list[float]] = field(default_factory=lambda: {"sliced": [], "unsliced": []})
    lags: dict[str, list[float]] = field(default_factory=lambda: {"sliced": [], "unsliced": []})
    cpu: dict[str, list[float]] = field(default_factory=lambda: {"sliced": [], "unsliced": []})
    gc: dict[str, list[float]] = field(default_factory=lambda: {"sliced": [], "unsliced": []})

    def record(self, mode: str, measured: Measured) -> None:
        rate, lags, cpu_lags, gc_pauses = measured
        self.rates[mode].append(rate)
        self.lags[mode].extend(lags)
        self.cpu[mode].extend(cpu_lags)
        self.gc[mode].extend(gc_pauses)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"what": self.what, "unit": self.unit}
        for mode in ("sliced", "unsliced"):
            if self.rates[mode]:
                out[mode] = {
                    "rate_median": round(statistics.median(self.rates[mode]), 1),
                    "rates": [round(r, 1) for r in self.rates[mode]],
                    **percentiles(self.lags[mode]),
                    "on_cpu": percentiles(self.cpu[mode]),
                    "gc_full_collections": len(self.gc[mode]),
                    "gc_longest_ms": round(max(self.gc[mode], default=0.0) * 1000, 3),
                }
        if self.rates["sliced"] and self.rates["unsliced"]:
            cost = 1 - out["sliced"]["rate_median"] / out["unsliced"]["rate_median"]
            out["throughput_cost"] = round(cost, 4)
        return out


async def run(args: argparse.Namespace, bootstrap: str | None) -> dict[str, Any]:
    cases = {
        "b": Case("b", f"{args.windows:,} windows fire at one watermark", "windows/s"),
        "c": Case("c", f"savepoint of {args.keys:,} keys of in-memory state", "keys/s"),
    }
    topic = None
    if bootstrap is not None:
        cases["a"] = Case("a", f"Kafka source catches up on {args.records:,} records", "records/s")
        print(f"filling a topic with {args.records:,} records ...", file=sys.stderr, flush=True)
        topic = await fill_topic(bootstrap, args.records)
    scratch = Path(tempfile.mkdtemp(prefix="loop-lag-"))
    try:
        for round_ in range(1, args.rounds + 1):
            for mode, config in (("sliced", SLICED), ("unsliced", UNSLICED)):
                print(f"round {round_}/{args.rounds}, {mode} ...", file=sys.stderr, flush=True)
                if bootstrap is not None and topic is not None:
                    gc.collect()
                    cases["a"].record(
                        mode,
                        await probed(
                            partial(kafka_catch_up, bootstrap, topic, args.records, config)
                        ),
                    )
                gc.collect()
                events = [(k, k % 60_000) for k in range(args.windows)]
                cases["b"].record(mode, await probed(partial(windows_firing, events, config)))
                gc.collect()
                client = await large_state_job(args.keys, config, scratch / f"chk-{mode}-{round_}")
                try:
                    target = scratch / f"savepoint-{mode}-{round_}"
                    cases["c"].record(
                        mode, await probed(partial(savepoint, client, target, args.keys))
                    )
                finally:
                    await client.cancel()
        print("two jobs sharing the loop ...", file=sys.stderr, flush=True)
        shares: dict[str, list[float]] = {"enrichment": [], "windowed": []}
        solo: dict[str, list[float]] = {"enrichment": [], "windowed": []}
        together: dict[str, list[float]] = {"enrichment": [], "windowed": []}
        for _ in range(args.rounds):
            solo["enrichment"].append((await rates([enrichment_job], args.seconds))[0])
            solo["windowed"].append((await rates([windowed_job], args.seconds))[0])
            both = await rates([enrichment_job, windowed_job], args.seconds)
            together["enrichment"].append(both[0])
            together["windowed"].append(both[1])
        for name in shares:
            shares[name] = [t / s for t, s in zip(together[name], solo[name])]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "cases": {name: case.summary() for name, case in sorted(cases.items())},
        "sharing": {
            name: {
                "solo_median": round(statistics.median(solo[name]), 1),
                "together_median": round(statistics.median(together[name]), 1),
                "share_median": round(statistics.median(shares[name]), 3),
                "shares": [round(s, 3) for s in shares[name]],
            }
            for name in shares
        },
    }


def report(results: dict[str, Any], kafka: bool) -> str:
    lines = [
        f"{'case':<5}{'mode':<10}{'lag p50':>9}{'p99':>9}{'max':>9}{'throughput':>16}  what",
    ]
    if not kafka:
        lines.append("a    (Kafka catch-up: skipped with --no-kafka)")
    for name, case in results["cases"].items():
        for mode in ("sliced", "unsliced"):
            m = case.get(mode)
            if m is None:
                continue
            lines.append(
                f"{name:<5}{mode:<10}{m['p50_ms']:>7.2f}ms{m['p99_ms']:>7.2f}ms"
                f"{m['max_ms']:>7.1f}ms{m['rate_median']:>12,.0f} {case['unit']:<9} {case['what']}"
                f" [on CPU: p99 {m['on_cpu']['p99_ms']:.2f} ms, max {m['on_cpu']['max_ms']:.1f} ms;"
                f" gc: {m['gc_full_collections']} full, longest {m['gc_longest_ms']:.1f} ms]"
            )
        sliced = case.get("sliced", {})
        ok = (
            sliced.get("p99_ms", 1e9) <= TARGET_P99_MS
            and sliced.get("max_ms", 1e9) <= TARGET_MAX_MS
        )
        lines.append(
            f"     sliced lag p99 <= {TARGET_P99_MS:.0f} ms and max <= {TARGET_MAX_MS:.0f} ms: "
            f"{'PASS' if ok else 'FAIL'}; throughput cost of slicing "
            f"{case.get('throughput_cost', 0) * 100:+.1f}% (target <= {TARGET_COST * 100:.0f}%)"
        )
    lines.append("d    two jobs on one loop (records/s; share = together / alone):")
    for name, s in results["sharing"].items():
        verdict = "PASS" if s["share_median"] >= TARGET_SHARE else "FAIL"
        lines.append(
            f"     {name:<11} alone {s['solo_median']:>10,.0f}  together {s['together_median']:>10,.0f}"
            f"  share {s['share_median']:.2f} (>= {TARGET_SHARE:.2f}: {verdict})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.loop_lag", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--windows", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each sharing run")
    parser.add_argument("--no-kafka", action="store_true", help="skip (a), the Kafka catch-up")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)

    bootstrap: str | None = None
    with contextlib.ExitStack() as stack:
        if not args.no_kafka:
            bootstrap = stack.enter_context(kafka_broker())
        results = run_blocking(run(args, bootstrap))
    print()
    print(report(results, bootstrap is not None))
    results["rounds"] = args.rounds
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
