"""Worker processes of the scale-out tests' keyed-sum job, their input and its exact output.

Input records are ``{"k": key, "v": 1}`` produced with each key in one partition, in
order, so the failure-free output is known exactly: for every key with n records,
``[key, 1] ... [key, n]``, each once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

REPO = Path(__file__).resolve().parents[2]
KEYS = 40


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


def check_output(records: list[Any], total: int) -> None:
    """``records`` are exactly the failure-free output of ``total`` inputs."""
    got = output_of(records)
    want = expected_output(total)
    missing, extra = want - got, got - want
    assert not missing and not extra, (
        f"{len(records)} records for {total} inputs; missing {sorted(missing)[:5]}, "
        f"extra {sorted(extra)[:5]}"
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
) -> subprocess.Popen[str]:
    """``python -m tests.kafka.scaleout_worker`` with its output in ``log``; ``properties``:
    more client properties of its internal clients, as JSON."""
    with log.open("w") as output:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "tests.kafka.scaleout_worker", bootstrap, app, src, out, job],
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            env={
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "SCALEOUT_INSTANCE_ID": instance_id,
                "SCALEOUT_PROPERTIES": properties,
            },
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
