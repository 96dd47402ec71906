"""Helpers of the multi-process scale-out tests: the keyed-sum job's input and expected
output, worker processes (``tests/kafka/scaleout_worker.py``) and their logs.

Input records are ``{"k": key, "v": 1}`` with each key in one of 4 partitions, in order,
so the failure-free output is known exactly: for every key with n records,
``[key, 1] ... [key, n]``, each once.
"""

from __future__ import annotations

import ast
import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.kafka._kafka import read_topic

REPO = Path(__file__).resolve().parents[2]
KEYS = 40

#: Tests with several worker processes on a shared 2-core machine beside the broker: a run
#: can miss a timing window (a rejoin within 30 s, a rebalance before the next kill), so a
#: failed run is tried again. Every run asserts the exact output.
worker_processes = pytest.mark.flaky(reruns=2)


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


def expected_output(total: int) -> Counter[tuple[int, int]]:
    per_key = Counter(i % KEYS for i in range(total))
    return Counter((k, s) for k, n in per_key.items() for s in range(1, n + 1))


def output_of(records: list[Any]) -> Counter[tuple[int, int]]:
    return Counter(tuple(orjson.loads(r.value)) for r in records)  # type: ignore[misc]


def start_process(module: str, args: Sequence[str], log: Path, **env: str) -> subprocess.Popen[str]:
    """``python -m module *args`` with its output in ``log`` and ``env`` added."""
    with log.open("w") as output:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        )


def start_worker(
    bootstrap: str,
    app: str,
    src: str,
    out: str,
    log: Path,
    job: str = "sum",
    instance_id: str = "",
    properties: str = "",
    block_s: float = 0.0,
) -> subprocess.Popen[str]:
    """``python -m tests.kafka.scaleout_worker`` with its output in ``log``; ``properties``:
    more client properties of its internal clients, as JSON; ``block_s``: its map blocks
    the loop that long at its first record."""
    return start_process(
        "tests.kafka.scaleout_worker",
        (bootstrap, app, src, out, job),
        log,
        SCALEOUT_INSTANCE_ID=instance_id,
        SCALEOUT_PROPERTIES=properties,
        SCALEOUT_BLOCK_S=str(block_s),
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


def check_output(records: list[Any], total: int) -> None:
    got = output_of(records)
    want = expected_output(total)
    missing, extra = want - got, got - want
    assert not missing and not extra, (
        f"{len(records)} records for {total} inputs; missing {sorted(missing)[:5]}, "
        f"extra {sorted(extra)[:5]}"
    )


async def trickle(
    bootstrap: str, topic: str, seconds: float, events: dict[float, Any], start: int = 0
) -> int:
    """Write 500 records every ~0.2 s for ``seconds``; call ``events[t]()`` once ``t``
    seconds have passed. Returns how many records were written in all."""
    total = start
    began = time.monotonic()
    pending = sorted(events)
    while time.monotonic() - began < seconds:
        await produce_keyed(bootstrap, topic, total, 500)
        total += 500
        while pending and time.monotonic() - began >= pending[0]:
            events[pending.pop(0)]()
        await asyncio.sleep(0.2)
    assert not pending, "the input ended before every event happened"
    return total


def rejoined(log: Path, after_line: int = 0) -> bool:
    """Whether the worker, from line ``after_line`` of its log on, found its tasks fenced
    (or gave them up uncommitted, or found that the tasks it had suspended had moved)
    and then owned tasks again."""
    lines = log.read_text().splitlines()[after_line:]
    signs = (
        "fenced by a newer owner",
        "no final commit",
        "changed hands while suspended",
        "closing suspended tasks now owned elsewhere",
    )
    lost = next((i for i, line in enumerate(lines) if any(s in line for s in signs)), None)
    return lost is not None and any(line.startswith("assigned [(") for line in lines[lost + 1 :])


def owned(log: Path) -> set[tuple[str, int]]:
    """The tasks a worker's log says it owns last."""
    lines = [line for line in log.read_text().splitlines() if line.startswith("assigned")]
    return set(ast.literal_eval(lines[-1].removeprefix("assigned "))) if lines else set()


async def produce_timed(bootstrap: str, topic: str, start: int, count: int) -> None:
    """Records ``start .. start+count-1``: key ``i % KEYS`` in partition ``key % 4``, event
    time ``i * 5`` ms (200 records, 5 per key, per second of event time)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = []
        for i in range(start, start + count):
            key, t = i % KEYS, i * 5
            value = orjson.dumps({"k": key, "t": t})
            futures.append(await producer.send(topic, value, partition=key % 4, timestamp_ms=t))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def windows_survive_a_kill(
    bootstrap: str, src: str, out: str, workers: list[subprocess.Popen[str]]
) -> None:
    """Feed the ``windows`` job timed input for 12 s, SIGKILL ``workers[0]`` after 5 s,
    move every partition's event time past the last window, and check that every
    (key, second) window was emitted once with its full count of 5."""
    total = 0
    began = time.monotonic()
    killed = False
    while time.monotonic() - began < 12:
        await produce_timed(bootstrap, src, total, 400)
        total += 400
        if not killed and time.monotonic() - began > 5:
            workers[0].send_signal(signal.SIGKILL)
            killed = True
        await asyncio.sleep(0.2)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        end = orjson.dumps({"k": -1, "t": total * 5 + 10_000})
        for p in range(4):
            await producer.send_and_wait(src, end, partition=p, timestamp_ms=total * 5 + 10_000)
    finally:
        await producer.stop()
    seconds = total * 5 // 1000  # complete seconds of event time (total is a multiple of 200)
    expected = Counter((k, s, 5) for k in range(KEYS) for s in range(seconds))
    records = await read_topic(
        bootstrap, out, expected=sum(expected.values()), timeout=90, settle=3.0
    )
    got: Counter[Any] = Counter(tuple(orjson.loads(r.value)) for r in records)
    assert got == expected, (
        f"missing {sorted(expected - got)[:5]}, extra {sorted(got - expected)[:5]}"
    )
