"""Two-input operators scaled out on the real broker: connect (keyed and not) and
interval_join.

The jobs (``tests/kafka/scaleout_two_inputs_worker.py``) read rides and fares from two
topics (4 and 3 partitions) while they are written. Fares are written two chunks behind
their rides, so a ride waits in keyed state for its fare across commits, and event time
at the two-input operator must be the minimum of both inputs: were it the rides' alone,
the "unpaid" timers would fire before the fares came. Every output is compared with the
same job run in one process (bounded sources, ``execute_and_collect``) and with the
output computed by hand: a ``read_committed`` consumer sees each record once.
"""

from __future__ import annotations

import ast
import asyncio
import pickle
import signal
import subprocess
import time
from collections import Counter, namedtuple
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from flowactors_kafka._client import TopicPartition
from flowactors_kafka._scaleout._task import WATERMARK_KEY, Task

from flowactors import StreamExecutionEnvironment
from flowactors.spi import INPUT_INDEX_HEADER, StageSpec
from tests.kafka._kafka import create_topic, read_topic, unique
from tests.kafka._scaleout import start_process, stop_workers, worker_processes
from tests.kafka.scaleout_two_inputs_worker import (
    JOIN_BOUND_MS,
    JOIN_KEYS,
    UNPAID_AFTER_MS,
    build,
    scaled_out,
    sink,
)

pytestmark = pytest.mark.kafka

RIDE_PARTITIONS, FARE_PARTITIONS = 4, 3
#: Event time of ride ``i``; its fare comes 50 ms of event time later.
START_MS, STEP_MS, FARE_DELAY_MS = 1_000_000, 10, 50
#: Fares are written this many chunks of 200 rides (2 s of event time each) after
#: their rides: by then the rides' event time is far past the "unpaid" timers.
FARES_LAG = 2


def ride(i: int) -> dict[str, int]:
    return {"id": i, "t": START_MS + i * STEP_MS}


def has_fare(i: int) -> bool:
    return i % 10 != 9


def fare(i: int) -> dict[str, int]:
    return {"id": i, "fare": i % 37 + 1, "t": START_MS + i * STEP_MS + FARE_DELAY_MS}


class Input:
    """Writes rides in chunks, and with each chunk the fares of the rides written
    :data:`FARES_LAG` chunks before."""

    def __init__(self, bootstrap: str, rides: str, fares: str) -> None:
        self.bootstrap = bootstrap
        self.rides = rides
        self.fares = fares
        self.written = 0  # rides written
        self.chunk_starts: list[int] = []  # first ride of every chunk written

    async def _send(self, records: list[tuple[str, dict[str, int], int]]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            futures = [
                await producer.send(topic, orjson.dumps(r), partition=p, timestamp_ms=r["t"])
                for topic, r, p in records
            ]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    def _fares(self, start: int, end: int) -> list[tuple[str, dict[str, int], int]]:
        return [
            (self.fares, fare(i), i % FARE_PARTITIONS) for i in range(start, end) if has_fare(i)
        ]

    async def chunk(self, rides: int) -> None:
        start, end = self.written, self.written + rides
        records = [(self.rides, ride(i), i % RIDE_PARTITIONS) for i in range(start, end)]
        self.chunk_starts.append(start)
        if len(self.chunk_starts) > FARES_LAG:
            paid = self.chunk_starts[-FARES_LAG - 1 : -FARES_LAG + 1]
            records += self._fares(paid[0], paid[1])
        await self._send(records)
        self.written = end

    async def finish(self) -> None:
        """The fares still due, then a record far ahead in event time in every partition
        of both topics, so that every timer fires."""
        due = self.chunk_starts[-FARES_LAG] if len(self.chunk_starts) >= FARES_LAG else 0
        await self._send(self._fares(due, self.written))
        await self.move_time(100_000)

    async def move_time(self, ahead_ms: int) -> None:
        """A time-only record ``ahead_ms`` past the last ride in every partition."""
        later = {"id": -1, "t": START_MS + self.written * STEP_MS + ahead_ms}
        await self._send(
            [(self.rides, later, p) for p in range(RIDE_PARTITIONS)]
            + [(self.fares, later, p) for p in range(FARE_PARTITIONS)]
        )

    async def trickle(self, seconds: float, on_the_way: Any = None) -> None:
        """Chunks of 200 rides every ~0.3 s for ``seconds``; ``on_the_way()`` once, halfway."""
        began = time.monotonic()
        while time.monotonic() - began < seconds:
            await self.chunk(200)
            if on_the_way is not None and time.monotonic() - began > seconds / 2:
                on_the_way()
                on_the_way = None
            await asyncio.sleep(0.3)
        await self.finish()


def enriched(rides: int) -> Counter[tuple[Any, ...]]:
    """The enrich job's output, by hand."""
    return Counter(
        ("paid", i, fare(i)["fare"])
        if has_fare(i)
        else ("unpaid", i, ride(i)["t"] + UNPAID_AFTER_MS)
        for i in range(rides)
    )


def joined(rides: int) -> Counter[tuple[Any, ...]]:
    """The join job's output, by hand: pairs of one key within the bounds."""
    fares = [fare(j) for j in range(rides) if has_fare(j)]
    by_key: dict[int, list[dict[str, int]]] = {}
    for f in fares:
        by_key.setdefault(f["id"] % JOIN_KEYS, []).append(f)
    pairs = Counter[tuple[Any, ...]]()
    for i in range(rides):
        r = ride(i)
        for f in by_key.get(i % JOIN_KEYS, []):
            if -JOIN_BOUND_MS <= f["t"] - r["t"] <= JOIN_BOUND_MS:
                pairs[(i, f["id"], max(r["t"], f["t"]))] += 1
    return pairs


def tagged(rides: int) -> Counter[tuple[Any, ...]]:
    """The co_map job's output: every ride and every fare, tagged."""
    return Counter(
        [("ride", i) for i in range(rides)] + [("fare", i) for i in range(rides) if has_fare(i)]
    )


EXPECTED = {"enrich": enriched, "join": joined, "co_map": tagged}


async def topics(bootstrap: str) -> tuple[str, str, str]:
    rides = await create_topic(bootstrap, unique("ti-rides"), RIDE_PARTITIONS)
    fares = await create_topic(bootstrap, unique("ti-fares"), FARE_PARTITIONS)
    out = await create_topic(bootstrap, unique("ti-out"), 4)
    # a worker fails to start while a topic it reads is not in the broker's metadata yet
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for topic in (rides, fares, out):
            await producer.partitions_for(topic)
    finally:
        await producer.stop()
    return rides, fares, out


async def in_one_process(bootstrap: str, rides: str, fares: str, job: str) -> Counter[Any]:
    """The same job without scale-out, reading what the topics hold now."""
    env = StreamExecutionEnvironment(parallelism=4)
    values = await build(env, bootstrap, rides, fares, job, bounded=True).execute_and_collect()
    return Counter(tuple(v) for v in values)


def output_of(records: list[Any]) -> Counter[tuple[Any, ...]]:
    return Counter(tuple(orjson.loads(r.value)) for r in records)


def check(got: Counter[Any], want: Counter[Any]) -> None:
    missing, extra = want - got, got - want
    assert not missing and not extra, (
        f"{sum(got.values())} records, {sum(want.values())} expected; "
        f"missing {sorted(missing)[:5]}, extra {sorted(extra)[:5]}"
    )


def test_a_two_input_task_reads_runs_of_one_input_in_partition_order() -> None:
    """The reader's side of the header, without a broker: records of input 1 carry it,
    watermark markers among the records are taken aside, runs keep their order."""
    fetched = namedtuple("fetched", "key value headers")
    header = [(INPUT_INDEX_HEADER, b"1")]

    def data(value: str, input_index: int) -> Any:
        return fetched(None, pickle.dumps((value, 7)), header if input_index else [])

    marker = fetched(WATERMARK_KEY, pickle.dumps(("up", 0, 5, False)), [])
    records = [data("a", 0), data("b", 0), data("x", 1), marker, data("y", 1), data("c", 0)]
    spec = StageSpec("s", None, "topic", 1, (), inputs=2)
    no_producer: Any = None  # decoding sends nothing
    task = Task(spec, TopicPartition("topic", 0), no_producer, group_id="g",
                commit_interval_s=1.0, start_offset=0, upstream_tasks=1)  # fmt: skip
    assert task.two_inputs
    assert list(task.decode_inputs(records)) == [
        (0, ["a", "b"], [7, 7]),
        (1, ["x", "y"], [7, 7]),
        (0, ["c"], [7]),
    ]
    assert task.upstream_watermarks == {("up", 0): 5}


@pytest.mark.parametrize("job", ["enrich", "join", "co_map"])
async def test_one_worker_runs_the_two_input_job_exactly_as_one_process(
    bootstrap: str, job: str
) -> None:
    rides, fares, out = await topics(bootstrap)
    data = Input(bootstrap, rides, fares)
    env = scaled_out(bootstrap, unique("ti-app"))
    build(env, bootstrap, rides, fares, job).sink_to(sink(bootstrap, out), name="out")
    client = await env.execute_async(job)
    try:
        await data.trickle(4)
        want = EXPECTED[job](data.written)
        records = await read_topic(
            bootstrap, out, expected=sum(want.values()), timeout=60, settle=1.0
        )
        assert sorted(client.assignment()) == sorted(
            [("rides-0", p) for p in range(RIDE_PARTITIONS)]
            + [("fares-2", p) for p in range(FARE_PARTITIONS)]
            + [(job, r) for r in range(4)]
        )
    finally:
        await client.stop()  # type: ignore[attr-defined]
    check(output_of(records), want)
    check(await in_one_process(bootstrap, rides, fares, job), want)


def start_worker(
    bootstrap: str, app: str, rides: str, fares: str, out: str, job: str, log: Path
) -> subprocess.Popen[str]:
    return start_process(
        "tests.kafka.scaleout_two_inputs_worker", (bootstrap, app, rides, fares, out, job), log
    )


def last_assignment(log: Path) -> set[tuple[str, int]]:
    lines = [line for line in log.read_text().splitlines() if line.startswith("assigned ")]
    return set(ast.literal_eval(lines[-1].removeprefix("assigned "))) if lines else set()


def all_tasks(job: str) -> set[tuple[str, int]]:
    return (
        {("rides-0", p) for p in range(RIDE_PARTITIONS)}
        | {("fares-2", p) for p in range(FARE_PARTITIONS)}
        | {(job, r) for r in range(4)}
    )


def owned_by(logs: list[Path]) -> set[tuple[str, int]]:
    """The tasks the workers writing ``logs`` said last that they own."""
    return set().union(*map(last_assignment, logs))


async def taken_over(logs: list[Path], tasks: set[tuple[str, int]]) -> None:
    deadline = time.monotonic() + 60
    while owned_by(logs) != tasks:
        assert time.monotonic() < deadline, "the survivors did not take every task over"
        await asyncio.sleep(0.2)


@worker_processes
@pytest.mark.parametrize(
    ("job", "workers", "kill"), [("enrich", 2, False), ("enrich", 3, True), ("join", 3, True)]
)
async def test_worker_processes_share_the_two_input_job_exactly_once(
    bootstrap: str, tmp_path: Path, job: str, workers: int, kill: bool
) -> None:
    """Workers share the job while input trickles in; with ``kill``, one is SIGKILLed
    mid-run and the others take its tasks over (state from the changelog)."""
    rides, fares, out = await topics(bootstrap)
    data = Input(bootstrap, rides, fares)
    app = unique("ti-app")
    logs = [tmp_path / f"worker{i}.log" for i in range(workers)]
    procs = [start_worker(bootstrap, app, rides, fares, out, job, log) for log in logs]
    try:
        # mid-run: tasks and state in flight
        await data.trickle(12, (lambda: procs[0].send_signal(signal.SIGKILL)) if kill else None)
        if kill:
            # A record read after the takeover moves event time on at once, so the last
            # "unpaid" timers fire without waiting for the moved tasks' first markers.
            await taken_over(logs[1:], all_tasks(job))
            await data.move_time(100_001)
        want = EXPECTED[job](data.written)
        records = await read_topic(
            bootstrap, out, expected=sum(want.values()), timeout=90, settle=3.0
        )
        check(output_of(records), want)
        check(await in_one_process(bootstrap, rides, fares, job), want)
        if kill:  # it died owning tasks of the two-input stage (their state moved)
            assert {s for s, _ in last_assignment(logs[0])} >= {job}
        # the live workers own every task between them (the killed one's moved)
        assert owned_by(logs[1:] if kill else logs) == all_tasks(job)
    finally:
        codes, tails = await asyncio.to_thread(stop_workers, procs, tmp_path)
    assert codes == ([-signal.SIGKILL] if kill else [0]) + [0] * (workers - 1), tails
