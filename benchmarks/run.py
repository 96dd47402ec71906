"""Throughput of flowactors pipelines against plain-Python loops doing the same work.

Run from the repository root::

    python -m benchmarks.run                        # 1,000,000 events, 5 repeats
    python -m benchmarks.run --events 200000 --repeats 3 --only P2,P2p2
    python -m benchmarks.run --profile --only P1    # cProfile one framework run instead

Every pipeline is timed two ways in the same process: (a) as a flowactors job
and (b) as a plain ``for`` loop that calls the very same user-function objects
on the same records and produces the same output. Runs alternate round by round
over all pipelines (baseline, framework, baseline, framework, ...), so machine
noise hits both sides alike. The report gives the median of the runs, records/s
and the ratio of framework to baseline throughput, checks the ratios against
the targets, prints a table and writes everything (per-run timings included)
to JSON, ``benchmarks/results.json`` by default.

Before anything is timed, each pipeline runs once with a collecting sink and
its output is compared with the baseline's (and the final sums per key with
sums computed directly from the events), so a broken pipeline cannot be
measured by accident; every timed run checks its record count as well.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import io
import json
import os
import platform
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flowactors
from flowactors import (
    AggregateFunction,
    DataStream,
    ExecutionConfig,
    StreamExecutionEnvironment,
    WatermarkStrategy,
)
from flowactors.spi import Sink, SinkWriter, SinkWriterContext
from flowactors.windows import TumblingEventTimeWindows

#: ``(key, value, event_time_ms)``
Event = tuple[str, int, int]

NUM_KEYS = 1_000
SPAN_MS = 3_600_000  # one hour of event time
MAX_DISORDER_MS = 5_000
SEED = 42
DEFAULT_JSON = Path(__file__).resolve().parent / "results.json"


# -- data ----------------------------------------------------------------------


def make_events(n: int, num_keys: int = NUM_KEYS, seed: int = SEED) -> list[Event]:
    """``n`` events over ``num_keys`` keys, event times ascending over one hour with
    up to 5 s of disorder; the same list for the same arguments."""
    rnd = random.Random(seed)
    keys = [f"key-{i:04d}" for i in range(num_keys)]
    pick = rnd.randrange
    return [
        (keys[pick(num_keys)], pick(1_000), max(0, i * SPAN_MS // n - pick(MAX_DISORDER_MS)))
        for i in range(n)
    ]


# -- user functions (shared by the jobs and the baselines) ---------------------


def double_value(e: Event) -> Event:
    return (e[0], e[1] * 2, e[2])


def not_multiple_of_three(e: Event) -> bool:
    return e[1] % 3 != 0


def key_of(e: Event) -> str:
    return e[0]


def running_sum(a: Event, b: Event) -> Event:
    return (a[0], a[1] + b[1], b[2])


# -- sinks ---------------------------------------------------------------------


class CountingSink(Sink[Any]):
    """Counts records; its writers do no per-record work (one ``+=`` per batch)."""

    def __init__(self) -> None:
        self.count = 0

    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        return _CountingWriter(self)


class _CountingWriter(SinkWriter[Any]):
    def __init__(self, sink: CountingSink) -> None:
        self.sink = sink

    async def write(self, values: list[Any], timestamps: list[int | None] | None) -> None:
        self.sink.count += len(values)


class CollectingSink(Sink[Any]):
    """Keeps every record, from every subtask (verification only, never timed)."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        return _CollectingWriter(self.records)


class _CollectingWriter(SinkWriter[Any]):
    def __init__(self, records: list[Any]) -> None:
        self.records = records

    async def write(self, values: list[Any], timestamps: list[int | None] | None) -> None:
        self.records.extend(values)


# -- pipelines -----------------------------------------------------------------


def build_map_filter(env: StreamExecutionEnvironment, events: list[Event]) -> DataStream[Any]:
    return env.from_collection(events).map(double_value).filter(not_multiple_of_three)


def baseline_map_filter(events: list[Event]) -> int:
    f, g = double_value, not_multiple_of_three
    count = 0
    for e in events:
        x = f(e)
        if g(x):
            count += 1
    return count


def reference_map_filter(events: list[Event]) -> list[Any]:
    f, g = double_value, not_multiple_of_three
    out = []
    for e in events:
        x = f(e)
        if g(x):
            out.append(x)
    return out


def build_running_sum(env: StreamExecutionEnvironment, events: list[Event]) -> DataStream[Any]:
    return env.from_collection(events).key_by(key_of).reduce(running_sum)


def baseline_running_sum(events: list[Event]) -> int:
    key, reduce = key_of, running_sum
    state: dict[str, Event] = {}
    get = state.get
    count = 0
    for e in events:
        k = key(e)
        acc = get(k)
        v = e if acc is None else reduce(acc, e)
        state[k] = v
        count += 1
    return count


def reference_running_sum(events: list[Event]) -> list[Any]:
    key, reduce = key_of, running_sum
    state: dict[str, Event] = {}
    get = state.get
    out = []
    for e in events:
        k = key(e)
        acc = get(k)
        v = e if acc is None else reduce(acc, e)
        state[k] = v
        out.append(v)
    return out


WINDOW_MS = 60_000


class CountPerWindow(AggregateFunction[Event, int, int]):
    def create_accumulator(self) -> int:
        return 0

    def add(self, value: Event, accumulator: int) -> int:
        return accumulator + 1

    def get_result(self, accumulator: int) -> int:
        return accumulator

    def merge(self, a: int, b: int) -> int:
        return a + b


def with_window(key: str, context: Any, counts: Any, out: Any) -> None:
    for count in counts:
        out.collect((key, context.window.end, count))


def event_time(event: Event, record_timestamp: int | None) -> int:
    return event[2]


def window_count(size_ms: int) -> Callable[[StreamExecutionEnvironment, list[Event]], Any]:
    """The job: count per key and tumbling event-time window of ``size_ms``."""

    def build(env: StreamExecutionEnvironment, events: list[Event]) -> DataStream[Any]:
        strategy = WatermarkStrategy.for_bounded_out_of_orderness(MAX_DISORDER_MS)
        return (
            env.from_collection(events)
            .assign_timestamps_and_watermarks(strategy.with_timestamp_assigner(event_time))
            .key_by(key_of)
            .window(TumblingEventTimeWindows.of(size_ms))
            .aggregate(CountPerWindow(), with_window)
        )

    return build


build_window_count = window_count(WINDOW_MS)


class _Out:
    def __init__(self) -> None:
        self.records: list[Any] = []
        self.collect = self.records.append


def _window_counts(events: list[Event], size_ms: int = WINDOW_MS) -> list[Any]:
    agg = CountPerWindow()
    key, add, create = key_of, agg.add, agg.create_accumulator
    accs: dict[tuple[str, int], int] = {}
    get = accs.get
    for e in events:
        slot = (key(e), e[2] - e[2] % size_ms)
        acc = get(slot)
        accs[slot] = add(e, create() if acc is None else acc)
    out = _Out()
    window = _FixedWindow()
    for (k, start), acc in accs.items():
        window.end = start + size_ms
        with_window(k, window, [agg.get_result(acc)], out)
    return out.records


class _FixedWindow:
    """Stands in for the window context the job's window function gets."""

    end = 0

    @property
    def window(self) -> _FixedWindow:
        return self


def baseline_window_count(events: list[Event]) -> int:
    return len(_window_counts(events))


def reference_window_count(events: list[Event]) -> list[Any]:
    return _window_counts(events)


SHORT_WINDOW_MS = 1_000


def baseline_short_window_count(events: list[Event]) -> int:
    return len(_window_counts(events, SHORT_WINDOW_MS))


def reference_short_window_count(events: list[Event]) -> list[Any]:
    return _window_counts(events, SHORT_WINDOW_MS)


@dataclass(frozen=True)
class Pipeline:
    name: str
    description: str
    parallelism: int
    build: Callable[[StreamExecutionEnvironment, list[Event]], DataStream[Any]]
    #: The timed loop: returns the number of records it emitted.
    baseline: Callable[[list[Event]], int]
    #: The same loop keeping its output, for verification (not timed).
    reference: Callable[[list[Event]], list[Any]]
    keyed: bool = False
    #: Window results: compared as a multiset (windows of different keys fire in any order).
    windowed: bool = False


PIPELINES: list[Pipeline] = [
    Pipeline(
        "P1",
        "from_collection -> map -> filter -> counting sink",
        1,
        build_map_filter,
        baseline_map_filter,
        reference_map_filter,
    ),
    Pipeline(
        "P2",
        "from_collection -> key_by -> reduce (running sum) -> counting sink",
        1,
        build_running_sum,
        baseline_running_sum,
        reference_running_sum,
        keyed=True,
    ),
    Pipeline(
        "P2p2",
        "P2 with the reduce (and sink) at parallelism 2",
        2,
        build_running_sum,
        baseline_running_sum,
        reference_running_sum,
        keyed=True,
    ),
    Pipeline(
        "P3",
        "bounded-disorder watermarks -> key_by -> 1-minute tumbling event-time window count",
        1,
        build_window_count,
        baseline_window_count,
        reference_window_count,
        windowed=True,
    ),
    Pipeline(
        "P4",
        "as P3 with 1-second windows: about one event per key and window, as many firings",
        1,
        window_count(SHORT_WINDOW_MS),
        baseline_short_window_count,
        reference_short_window_count,
        windowed=True,
    ),
]


@dataclass(frozen=True)
class Target:
    pipeline: str
    metric: str
    threshold: float
    #: ``None``: the pipeline's baseline; otherwise the framework run of this pipeline.
    relative_to: str | None = None


TARGETS: list[Target] = [
    Target("P1", "framework / baseline throughput", 0.6),
    Target("P2", "framework / baseline throughput", 0.45),
    Target("P2p2", "framework P2p2 / framework P2 throughput", 0.7, relative_to="P2"),
    Target("P3", "framework / baseline throughput", 0.5),
    Target("P4", "framework / baseline throughput", 0.25),
]


# -- running -------------------------------------------------------------------


class BenchmarkError(Exception):
    """A pipeline produced the wrong output; its timings would be meaningless."""


def event_loop_name() -> str:
    """The loop ``env.execute_blocking`` runs on (``run_blocking`` prefers uvloop)."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    return f"uvloop {getattr(uvloop, '__version__', '?')}"


def prepare_job(
    pipeline: Pipeline, events: list[Event], sink: Sink[Any]
) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment(parallelism=pipeline.parallelism)
    pipeline.build(env, events).sink_to(sink, name="Counting Sink")
    return env


def time_framework(pipeline: Pipeline, events: list[Event], expected: int) -> float:
    sink = CountingSink()
    env = prepare_job(pipeline, events, sink)
    gc.collect()
    start = time.perf_counter()
    env.execute_blocking(f"bench-{pipeline.name}")
    elapsed = time.perf_counter() - start
    if sink.count != expected:
        raise BenchmarkError(
            f"{pipeline.name}: job emitted {sink.count} records, expected {expected}"
        )
    return elapsed


def time_baseline(pipeline: Pipeline, events: list[Event], expected: int) -> float:
    gc.collect()
    start = time.perf_counter()
    count = pipeline.baseline(events)
    elapsed = time.perf_counter() - start
    if count != expected:
        raise BenchmarkError(
            f"{pipeline.name}: baseline emitted {count} records, expected {expected}"
        )
    return elapsed


def _by_key(records: Sequence[Event]) -> dict[str, list[Event]]:
    groups: dict[str, list[Event]] = {}
    for r in records:
        groups.setdefault(r[0], []).append(r)
    return groups


def verify(pipeline: Pipeline, events: list[Event]) -> int:
    """Run the job once with a collecting sink and compare with the baseline's output.

    Returns the number of output records every timed run must produce.
    """
    expected = pipeline.reference(events)
    count = pipeline.baseline(events)
    if count != len(expected):
        raise BenchmarkError(f"{pipeline.name}: baseline counts {count}, reference {len(expected)}")
    sink = CollectingSink()
    prepare_job(pipeline, events, sink).execute_blocking(f"verify-{pipeline.name}")
    got = sink.records
    if len(got) != len(expected):
        raise BenchmarkError(
            f"{pipeline.name}: job emitted {len(got)} records, expected {len(expected)}"
        )
    if pipeline.windowed:
        if sorted(got) != sorted(expected):
            raise BenchmarkError(f"{pipeline.name}: window results differ from the baseline's")
    elif pipeline.parallelism == 1:
        if got != expected:
            raise BenchmarkError(f"{pipeline.name}: job output differs from the baseline's")
    elif _by_key(got) != _by_key(expected):
        # Subtasks interleave, but each key's records must come in the same order.
        raise BenchmarkError(f"{pipeline.name}: per-key job output differs from the baseline's")
    if pipeline.keyed:
        sums: dict[str, int] = {}
        for key, value, _ in events:
            sums[key] = sums.get(key, 0) + value
        finals = {key: seq[-1][1] for key, seq in _by_key(got).items()}
        if finals != sums:
            raise BenchmarkError(f"{pipeline.name}: final sums per key are wrong")
    elif not 0 < len(expected) < len(events):
        raise BenchmarkError(f"{pipeline.name}: the filter keeps {len(expected)} records")
    return len(expected)


@dataclass
class Result:
    pipeline: Pipeline
    output_records: int
    baseline_s: list[float] = field(default_factory=list)
    framework_s: list[float] = field(default_factory=list)

    @property
    def baseline_median(self) -> float:
        return statistics.median(self.baseline_s)

    @property
    def framework_median(self) -> float:
        return statistics.median(self.framework_s)

    @property
    def ratio(self) -> float:
        """Framework throughput over baseline throughput."""
        return self.baseline_median / self.framework_median


def run(pipelines: list[Pipeline], events: list[Event], repeats: int) -> dict[str, Result]:
    results: dict[str, Result] = {}
    for p in pipelines:  # also warms both paths up
        print(f"verifying {p.name} ...", file=sys.stderr, flush=True)
        results[p.name] = Result(p, verify(p, events))
    for round_ in range(1, repeats + 1):
        print(f"round {round_}/{repeats} ...", file=sys.stderr, flush=True)
        for p in pipelines:
            r = results[p.name]
            r.baseline_s.append(time_baseline(p, events, r.output_records))
            r.framework_s.append(time_framework(p, events, r.output_records))
    return results


def evaluate_targets(results: dict[str, Result]) -> list[dict[str, Any]]:
    evaluated = []
    for t in TARGETS:
        r = results.get(t.pipeline)
        if r is None:
            continue
        value: float | None
        if t.relative_to is None:
            value = r.ratio
        elif t.relative_to in results:
            value = results[t.relative_to].framework_median / r.framework_median
        else:
            value = None  # its reference pipeline was not run
        evaluated.append(
            {
                "pipeline": t.pipeline,
                "metric": t.metric,
                "relative_to": t.relative_to or "baseline",
                "threshold": t.threshold,
                "value": None if value is None else round(value, 4),
                "passed": None if value is None else value >= t.threshold,
            }
        )
    return evaluated


# -- reporting -----------------------------------------------------------------


def _rate(events: int, seconds: float) -> str:
    return f"{events / seconds / 1e6:.2f} M/s"


def _verdict(target: dict[str, Any]) -> str:
    if target["value"] is None:
        return f"vs {target['relative_to']}: not measured ({target['relative_to']} did not run)"
    ok = "PASS" if target["passed"] else "FAIL"
    if target["metric"].startswith("framework /"):
        return f">= {target['threshold']:.2f}x baseline: {ok}"
    return (
        f"{target['value']:.2f}x of {target['relative_to']} (>= {target['threshold']:.2f}x): {ok}"
    )


def format_table(results: dict[str, Result], targets: list[dict[str, Any]], events: int) -> str:
    header = (
        f"{'pipeline':<9}{'par':>4}{'baseline':>12}{'(median)':>10}"
        f"{'framework':>12}{'(median)':>10}{'ratio':>8}  target"
    )
    lines = [header, "-" * (len(header) + 30)]
    for name, r in results.items():
        verdicts = "; ".join(_verdict(t) for t in targets if t["pipeline"] == name)
        lines.append(
            f"{name:<9}{r.pipeline.parallelism:>4}"
            f"{_rate(events, r.baseline_median):>12}{r.baseline_median:>9.3f}s"
            f"{_rate(events, r.framework_median):>12}{r.framework_median:>9.3f}s"
            f"{r.ratio:>7.2f}x  {verdicts}"
        )
    lines.append("ratio = framework throughput / baseline throughput (medians)")
    return "\n".join(lines)


def to_json(
    results: dict[str, Result], targets: list[dict[str, Any]], events: int, repeats: int
) -> dict[str, Any]:
    config = ExecutionConfig()
    return {
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "flowactors": flowactors.__version__,
        "python": sys.version,
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "event_loop": event_loop_name(),
        "events": events,
        "keys": NUM_KEYS,
        "repeats": repeats,
        "batch_size": config.batch_size,
        "mailbox_capacity": config.mailbox_capacity,
        "pipelines": {
            name: {
                "description": r.pipeline.description,
                "parallelism": r.pipeline.parallelism,
                "output_records": r.output_records,
                "baseline": {
                    "runs_s": [round(s, 6) for s in r.baseline_s],
                    "median_s": round(r.baseline_median, 6),
                    "records_per_s": round(events / r.baseline_median),
                },
                "framework": {
                    "runs_s": [round(s, 6) for s in r.framework_s],
                    "median_s": round(r.framework_median, 6),
                    "records_per_s": round(events / r.framework_median),
                },
                "ratio_to_baseline": round(r.ratio, 4),
            }
            for name, r in results.items()
        },
        "targets": targets,
    }


def profile(pipelines: list[Pipeline], events: list[Event], top: int) -> None:
    """cProfile one framework run per pipeline (after a warm-up run); print the top entries."""
    for p in pipelines:
        expected = verify(p, events)
        sink = CountingSink()
        env = prepare_job(p, events, sink)
        gc.collect()
        profiler = cProfile.Profile()
        profiler.enable()
        env.execute_blocking(f"profile-{p.name}")
        profiler.disable()
        if sink.count != expected:
            raise BenchmarkError(f"{p.name}: job emitted {sink.count} records, expected {expected}")
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
        print(f"=== {p.name}: {p.description} (parallelism {p.parallelism}) ===")
        print(out.getvalue())


# -- command line --------------------------------------------------------------


def select(only: list[str] | None) -> list[Pipeline]:
    if not only:
        return PIPELINES
    names = {n.strip() for arg in only for n in arg.split(",") if n.strip()}
    known = [p.name for p in PIPELINES]
    unknown = sorted(names.difference(known))
    if unknown:
        raise SystemExit(
            f"unknown pipeline(s) {', '.join(unknown)}; choose from {', '.join(known)}"
        )
    return [p for p in PIPELINES if p.name in names]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--events", type=int, default=1_000_000, help="events to process (default 1,000,000)"
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs of each side (default 5)"
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only these pipelines (P1, P2, P2p2, P3, P4; repeat or comma-separate)",
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile one framework run per pipeline instead of timing",
    )
    parser.add_argument("--top", type=int, default=25, help="profile entries to print (default 25)")
    args = parser.parse_args(argv)
    if args.events < 1 or args.repeats < 1:
        parser.error("--events and --repeats must be >= 1")
    pipelines = select(args.only)

    print(
        f"generating {args.events:,} events over {NUM_KEYS:,} keys ...", file=sys.stderr, flush=True
    )
    events = make_events(args.events)
    if args.profile:
        profile(pipelines, events, args.top)
        return 0

    results = run(pipelines, events, args.repeats)
    targets = evaluate_targets(results)
    print()
    print(
        f"{args.events:,} events, {NUM_KEYS:,} keys, median of {args.repeats} runs, "
        f"Python {platform.python_version()}, {event_loop_name()}"
    )
    print(format_table(results, targets, args.events))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(to_json(results, targets, args.events, args.repeats), indent=2) + "\n"
    )
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
