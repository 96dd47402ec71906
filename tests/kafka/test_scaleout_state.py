"""State that moves with a scaled-out task: RocksDB keyed state through the changelog,
event time across failover. Worker processes run ``tests/kafka/scaleout_state_worker.py``."""

from __future__ import annotations

import ast
import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.kafka._kafka import create_topic, read_topic, unique

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
KEYS = 40

#: Tests with several worker processes on a shared 2-core machine beside the broker: a run
#: can miss a timing window (a rebalance before the next step), so a failed run is tried
#: again. Every run asserts the exact output.
worker_processes = pytest.mark.flaky(reruns=2)


def start_worker(
    bootstrap: str, app: str, src: str, out: str, log: Path, job: str, *extra: str
) -> subprocess.Popen[str]:
    with log.open("w") as output:  # the child keeps its own descriptor
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.kafka.scaleout_state_worker",
                bootstrap,
                app,
                src,
                out,
                job,
                *extra,
            ],
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def stop_workers(
    workers: list[subprocess.Popen[str]], logs: Path
) -> tuple[list[int | None], dict[str, str]]:
    """SIGTERM the live ones (a planned stop); their exit codes and the ends of their logs."""
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    codes: list[int | None] = []
    for w in workers:
        try:
            codes.append(w.wait(60))
        except subprocess.TimeoutExpired:
            w.kill()
            codes.append(None)
    return codes, {p.name: p.read_text()[-3000:] for p in logs.glob("*.log")}


def assignments(log: str) -> list[set[tuple[str, int]]]:
    return [
        set(ast.literal_eval(line.removeprefix("assigned ")))
        for line in log.splitlines()
        if line.startswith("assigned ")
    ]


async def produce_keyed(bootstrap: str, topic: str, start: int, count: int) -> None:
    """Records ``start .. start+count-1``: key ``i % KEYS``, in partition ``key % 4``."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = []
        for i in range(start, start + count):
            key = i % KEYS
            futures.append(
                await producer.send(
                    topic,
                    orjson.dumps({"k": key, "v": 1}),
                    key=str(key).encode(),
                    partition=key % 4,
                )
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def check_running_sums(records: list[Any], total: int) -> None:
    got = Counter(tuple(orjson.loads(r.value)) for r in records)
    per_key = Counter(i % KEYS for i in range(total))
    want = Counter((k, s) for k, n in per_key.items() for s in range(1, n + 1))
    missing, extra = want - got, got - want
    assert not missing and not extra, (
        f"{len(records)} records for {total} inputs; missing {sorted(missing)[:5]}, "
        f"extra {sorted(extra)[:5]}"
    )


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
        check_running_sums(records, total)
    finally:
        codes, texts = await asyncio.to_thread(stop_workers, workers, logs)
    assert codes == [-signal.SIGKILL, 0], texts
    # it died owning keyed tasks, and the survivor took every task over
    owned_by_killed = assignments(texts["worker0.log"])
    assert any(task[0] == "sum" for task in owned_by_killed[-1]), texts
    assert assignments(texts["worker1.log"])[-1] == {("in-0", p) for p in range(4)} | {
        ("sum", r) for r in range(4)
    }, texts
