"""Two replicas of the service that embeds a job (examples/service_aiohttp.py and
examples/service_asgi.py around examples/service_job.py) share the job through Kafka
when started with one ``SERVICE_APPLICATION_ID``: every event is counted once in all,
also when one replica is stopped (SIGTERM) mid-stream and the other takes over."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.kafka._kafka import create_topic, read_topic, unique

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
KEYS = 10  # the service's SERVICE_KEYS default: events count for key-<k % 10>
EVERY_TASK = {("events-0", p) for p in range(4)} | {("counts", r) for r in range(4)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Replica:
    """One service process, started as a user would start a replica."""

    def __init__(self, module: str, environment: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        with log.open("w") as output:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", module, "--port", str(self.port)],
                cwd=REPO,
                env={**os.environ, **environment, "PYTHONUNBUFFERED": "1"},
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
            )

    def get(self, path: str) -> tuple[int, Any]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return 0, None

    def tasks(self) -> set[tuple[str, int]]:
        status, health = self.get("/healthz")
        if status != 200:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            return set()
        return {(stage, partition) for stage, partition in health["tasks"]}

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


async def until(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)


async def produce_events(bootstrap: str, topic: str, start: int, count: int) -> None:
    """Events ``start .. start+count-1`` as ``{"k": i}``, spread over the partitions."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, orjson.dumps({"k": i}), partition=i % 4)
            for i in range(start, start + count)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def expected_counts(total: int) -> Counter[tuple[str, int]]:
    """Each key's running counts 1..n, once each: what one process would write."""
    per_key = Counter(f"key-{i % KEYS}" for i in range(total))
    return Counter((key, c) for key, n in per_key.items() for c in range(1, n + 1))


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_two_replicas_count_every_event_once_also_when_one_stops(
    bootstrap: str, tmp_path: Path
) -> None:
    src = await create_topic(bootstrap, unique("svc-in"), 4)
    out = await create_topic(bootstrap, unique("svc-out"), 4)
    environment = {
        "SERVICE_KAFKA": bootstrap,
        "SERVICE_TOPIC": src,
        "SERVICE_OUTPUT_TOPIC": out,
        "SERVICE_APPLICATION_ID": unique("svc-app"),
        "SERVICE_STATE": str(tmp_path / "unused"),
    }
    replicas = [
        Replica("examples.service_aiohttp", environment, tmp_path / "aiohttp.log"),
        Replica("examples.service_asgi", environment, tmp_path / "asgi.log"),
    ]
    try:
        # both serve, and the tasks are shared: each owns some, none is owned twice
        def shared() -> bool:
            a, b = (r.tasks() for r in replicas)
            assert not a & b, (a, b)
            return bool(a and b) and a | b == EVERY_TASK

        await until(shared, "the replicas never shared the tasks")
        status, text = replicas[0].get("/counts/key-1")
        assert status == 404 and "SERVICE_OUTPUT_TOPIC" in text

        await produce_events(bootstrap, src, 0, 3000)
        stopped = replicas[1].stop()  # mid-stream: its tasks move to the other replica
        await produce_events(bootstrap, src, 3000, 3000)
        await until(
            lambda: replicas[0].tasks() == EVERY_TASK, "the other replica took nothing over"
        )
        await produce_events(bootstrap, src, 6000, 2000)
        records = await read_topic(bootstrap, out, expected=8000, timeout=90, settle=3.0)
    finally:
        codes = [r.stop() for r in replicas]
    logs = {r.log.name: r.log.read_text()[-3000:] for r in replicas}
    got = Counter((key, count) for key, count in (orjson.loads(r.value) for r in records))
    want = expected_counts(8000)
    assert got == want, (
        f"{len(records)} counts for 8000 events; missing {sorted(want - got)[:5]}, "
        f"twice or more {sorted(got - want)[:5]}"
    )
    assert stopped == 0 and codes == [0, 0], logs
    for log in logs.values():
        assert "left the group" in log and "flowactors tasks left: 0" in log, logs
