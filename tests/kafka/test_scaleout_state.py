"""State that moves with a scaled-out task: RocksDB keyed state through the changelog,
event time across failover. Worker processes run ``tests/kafka/scaleout_state_worker.py``."""

from __future__ import annotations

import ast
import asyncio
import itertools
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from flowactors_kafka._scaleout._event_time import TaskEventTime
from flowactors_kafka._scaleout._task import UserSinkWriter

from tests.kafka._kafka import create_topic, read_topic, unique
from tests.kafka._scaleout import (
    KEYS,
    check_output,
    produce_keyed,
    start_process,
    stop_workers,
    windows_survive_a_kill,
    worker_processes,
)

pytestmark = pytest.mark.kafka


def test_event_time_round_trips_through_offset_metadata() -> None:
    event_time = TaskEventTime(
        hops={"app-sum-repartition/0": 1500},
        emitted=1200,
        upstream_watermarks={("in-0", 0): 1200, ("in-0", 1): 1900},
        upstream_idle={("in-0", 2)},
    )
    assert TaskEventTime.decode(event_time.encode()) == event_time
    assert event_time.watermark == 1500  # a new owner's chain starts at the highest
    assert TaskEventTime.decode("") == TaskEventTime() and TaskEventTime().encode() == ""
    assert TaskEventTime.decode("written by another tool") == TaskEventTime()


async def test_the_watermark_reaching_a_user_sink_is_committed_event_time() -> None:
    """A source stage writing straight to a Kafka sink (no hop, e.g. windows after
    reinterpret_as_keyed) has only its sink to tell its event time: it is committed and
    a new owner's chain starts there, so its windows do not fire twice after a move."""
    task = SimpleNamespace(sink_watermark=None)
    writer = UserSinkWriter(cast(Any, task), write=_ignore)
    await writer.write_watermark(1000)
    await writer.write_watermark(3000)
    await writer.write_watermark(2000)  # never back
    assert task.sink_watermark == 3000
    committed = TaskEventTime(sinks=task.sink_watermark)
    assert TaskEventTime.decode(committed.encode()) == committed
    assert committed.watermark == 3000


async def _ignore(values: list[Any], timestamps: list[int | None] | None) -> None:
    return None


def test_offset_metadata_leaves_out_upstream_tasks_that_would_not_fit() -> None:
    """Brokers cap offset metadata (4096 bytes by default): the watermarks stay."""
    many = {(f"stage-{n}", p): 10**12 for n in range(50) for p in range(16)}
    text = TaskEventTime({"t/0": 5}, 7, many, set()).encode()
    assert len(text) <= 1024
    assert TaskEventTime.decode(text) == TaskEventTime({"t/0": 5}, 7)


def start_worker(
    bootstrap: str, app: str, src: str, out: str, log: Path, job: str, *extra: str
) -> subprocess.Popen[str]:
    return start_process(
        "tests.kafka.scaleout_state_worker", (bootstrap, app, src, out, job, *extra), log
    )


def assignments(log: str) -> list[set[tuple[str, int]]]:
    return [
        set(ast.literal_eval(line.removeprefix("assigned ")))
        for line in log.splitlines()
        if line.startswith("assigned ")
    ]


@worker_processes
async def test_rocksdb_state_survives_a_worker_killed_mid_run(
    bootstrap: str, tmp_path: Path
) -> None:
    """The running sums live in RocksDB; the killed worker's sums continue on the
    survivor from the changelog: no sum restarts, repeats or skips."""
    src = await create_topic(bootstrap, unique("st-in"), 4)
    out = await create_topic(bootstrap, unique("st-out"), 4)
    app = unique("st-app")
    logs = tmp_path / "logs"
    logs.mkdir()
    workers = [
        start_worker(
            bootstrap, app, src, out, logs / f"worker{i}.log", "rocksdb-sum", str(tmp_path / "db")
        )
        for i in range(2)
    ]
    total, killed = 0, False
    try:
        began = time.monotonic()
        while time.monotonic() - began < 12:  # a steady trickle of input while workers run
            await produce_keyed(bootstrap, src, total, 500)
            total += 500
            if not killed and time.monotonic() - began > 5:
                workers[0].send_signal(signal.SIGKILL)  # mid-run: tasks in flight
                killed = True
            await asyncio.sleep(0.2)
        records = await read_topic(bootstrap, out, expected=total, timeout=90, settle=3.0)
        check_output(records, total)
    finally:
        codes, texts = await asyncio.to_thread(stop_workers, workers, logs)
    assert codes == [-signal.SIGKILL, 0], texts
    # it died owning keyed tasks, and the survivor took every task over
    owned_by_killed = assignments(texts["worker0.log"])
    assert any(task[0] == "sum" for task in owned_by_killed[-1]), texts
    assert assignments(texts["worker1.log"])[-1] == {("in-0", p) for p in range(4)} | {
        ("sum", r) for r in range(4)
    }, texts


@worker_processes
async def test_a_job_switches_from_heap_to_rocksdb_over_its_changelog(
    bootstrap: str, tmp_path: Path
) -> None:
    """The running sums are kept in memory, the worker stops as planned, and the next
    run of the job keeps them in RocksDB: it restores what the heap backend logged
    and the sums go on."""
    src = await create_topic(bootstrap, unique("sw-in"), 4)
    out = await create_topic(bootstrap, unique("sw-out"), 4)
    app = unique("sw-app")
    logs = tmp_path / "logs"
    logs.mkdir()
    heap = start_worker(bootstrap, app, src, out, logs / "heap.log", "sum")
    await produce_keyed(bootstrap, src, 0, 2000)
    try:
        records = await read_topic(bootstrap, out, expected=2000, timeout=60, settle=0.5)
        check_output(records, 2000)
    finally:
        codes, texts = await asyncio.to_thread(stop_workers, [heap], logs)
    assert codes == [0], texts
    rocksdb = start_worker(
        bootstrap, app, src, out, logs / "rocksdb.log", "rocksdb-sum", str(tmp_path / "db")
    )
    await produce_keyed(bootstrap, src, 2000, 2000)
    try:
        records = await read_topic(bootstrap, out, expected=4000, timeout=60, settle=2.0)
        check_output(records, 4000)  # [k, 51] follows [k, 50]: restored, not restarted
    finally:
        codes, texts = await asyncio.to_thread(stop_workers, [rocksdb], logs)
    assert codes == [0], texts


@worker_processes
async def test_rocksdb_windows_and_their_timers_survive_a_worker_killed_mid_run(
    bootstrap: str, tmp_path: Path
) -> None:
    """Window contents (namespaced RocksDB state) and their timers move with the tasks:
    every (key, second) window is emitted once with its full count."""
    src = await create_topic(bootstrap, unique("stw-in"), 4)
    out = await create_topic(bootstrap, unique("stw-out"), 4)
    app = unique("stw-app")
    logs = tmp_path / "logs"
    logs.mkdir()
    workers = [
        start_worker(
            bootstrap, app, src, out, logs / f"worker{i}.log", "rocksdb-windows", str(tmp_path)
        )
        for i in range(2)
    ]
    try:
        await windows_survive_a_kill(bootstrap, src, out, workers)
    finally:
        codes, texts = await asyncio.to_thread(stop_workers, workers, logs)
    assert codes == [-signal.SIGKILL, 0], texts
    assert any(task[0] == "windows" for task in assignments(texts["worker0.log"])[-1]), texts


async def produce_out_of_order(bootstrap: str, topic: str, start: int, count: int) -> None:
    """Records ``{"k": i % KEYS, "i": i}`` in partition ``key % 4``; record ``i``'s
    timestamp is ``BASE + 10 i`` plus up to 49 ms, so each partition is out of order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = []
        for i in range(start, start + count):
            key = i % KEYS
            futures.append(
                await producer.send(
                    topic,
                    orjson.dumps({"k": key, "i": i}),
                    partition=key % 4,
                    timestamp_ms=BASE + 10 * i + (i * 37) % 50,
                )
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


BASE = int(time.time() * 1000)


@worker_processes
async def test_event_time_never_goes_back_when_every_task_moves(
    bootstrap: str, tmp_path: Path
) -> None:
    """A worker owning every task is killed and another takes over: its source tasks
    start from the watermarks the dead one committed (not from fresh generators), and
    the tasks after the hop from the watermark they had passed on, so the watermark
    every record meets after the move is never below one met before."""
    src = await create_topic(bootstrap, unique("wm-in"), 4)
    out = await create_topic(bootstrap, unique("wm-out"), 4)
    app = unique("wm-app")
    logs = tmp_path / "logs"
    logs.mkdir()
    first = start_worker(bootstrap, app, src, out, logs / "worker0.log", "watermarks")
    workers = [first]
    total = 0
    try:
        began = time.monotonic()
        while time.monotonic() - began < 16:
            await produce_out_of_order(bootstrap, src, total, 200)
            total += 200
            if len(workers) == 1 and time.monotonic() - began > 6:
                first.send_signal(signal.SIGKILL)  # owns every task: all of them move
                workers.append(
                    start_worker(bootstrap, app, src, out, logs / "worker1.log", "watermarks")
                )
            await asyncio.sleep(0.2)
        records = await read_topic(bootstrap, out, expected=total, timeout=90, settle=3.0)
    finally:
        codes, texts = await asyncio.to_thread(stop_workers, workers, logs)
    assert codes == [-signal.SIGKILL, 0], texts
    assert len(assignments(texts["worker0.log"])[-1]) == 8, texts  # it ran every task
    rows = [orjson.loads(r.value) for r in records]
    assert sorted(i for _, i, _ in rows) == list(range(total))  # each record once
    seen_after_move = 0
    for partition in {r.partition for r in records}:
        by_key: dict[int, list[int]] = {}
        for r in records:
            if r.partition == partition:
                key, _, watermark = orjson.loads(r.value)
                by_key.setdefault(key, []).append(watermark)
        for key, marks in by_key.items():
            went_back = [(a, b) for a, b in itertools.pairwise(marks) if b < a]
            assert not went_back, f"key {key}: watermark went back {went_back[:3]}"
            seen_after_move += sum(1 for w in marks if w > BASE)
    assert seen_after_move > 0  # event time did advance
