"""Scale-out under operations, on a real broker: the broker restarts under running workers,
and a job starts before its output topic exists.

The job is the keyed running sum of ``tests/kafka/scaleout_worker.py`` (4-partition source
-> map -> key_by -> running sum -> exactly-once Kafka sink); its exact failure-free output
is known (``tests/kafka/_scaleout_workers.py``).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flowactors import JobStatus, StreamExecutionEnvironment
from tests.kafka._kafka import create_topic, output_offsets, read_topic, unique
from tests.kafka._scaleout import check_output, produce_keyed, start_worker, stop_workers
from tests.kafka.conftest import Broker, broker_dir, restart_broker, start_broker, stop_broker
from tests.kafka.scaleout_worker import build

pytestmark = pytest.mark.kafka

#: Each restart meets the workers' clients in another state (a request in flight, a
#: commit half done, idle): two make it likelier that one hits a producer mid-request.
RESTARTS = 2
#: Clients that retry sooner have more requests in flight when the broker goes down
#: (aiokafka's default backoff is 100 ms): the restart meets more of them mid-request.
RETRY = '{"retry.backoff.ms": 10}'


@pytest.fixture
async def own_broker() -> AsyncIterator[Broker]:
    """A broker of the test's own: the session's must not go down under other tests."""
    directory = broker_dir()
    broker = await asyncio.to_thread(start_broker, directory)
    try:
        yield broker
    finally:
        await asyncio.to_thread(stop_broker, broker)
        shutil.rmtree(directory, ignore_errors=True)


async def feed(bootstrap: str, topic: str, start: int, seconds: float) -> int:
    """500 records every ~0.2 s for ``seconds``; the next record number."""
    total = start
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        await produce_keyed(bootstrap, topic, total, 500)
        total += 500
        await asyncio.sleep(0.2)
    return total


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_workers_carry_on_by_themselves_after_a_broker_restart(
    own_broker: Broker, tmp_path: Path
) -> None:
    """The broker stops (SIGTERM) while two workers commit transactions, and starts again
    on the same data 3 s later, twice: the workers reconnect, the group re-forms, a task
    whose producer died with its connection is opened again from its last commit, and
    the job goes on; a read_committed consumer sees exactly the failure-free output."""
    bootstrap = own_broker.bootstrap
    src = await create_topic(bootstrap, unique("ops-in"), 4)
    out = await create_topic(bootstrap, unique("ops-out"), 4)
    app = unique("ops-app")
    workers = [
        start_worker(bootstrap, app, src, out, tmp_path / f"worker{i}.log", properties=RETRY)
        for i in range(2)
    ]
    try:
        total = 0
        for _ in range(RESTARTS):
            total = await feed(bootstrap, src, total, 5)
            deadline = time.monotonic() + 60
            while await output_offsets(bootstrap, out) < total // 2:  # mid-job, tasks busy
                assert time.monotonic() < deadline, "no output before the restart"
                await asyncio.sleep(0.1)
            await asyncio.to_thread(restart_broker, own_broker, 3.0)
        total = await feed(bootstrap, src, total, 5)
        records = await read_topic(bootstrap, out, expected=total, timeout=120, settle=3.0)
        check_output(records, total)
    finally:
        codes, logs = await asyncio.to_thread(stop_workers, workers, tmp_path)
    assert codes == [0, 0], logs


async def test_a_sink_topic_created_after_the_start_is_waited_for(bootstrap: str) -> None:
    """Deployed before its output topic exists: the tasks that write it fail on a
    retriable error (the topic is unknown) and are opened again until it exists; then
    the job carries on from its last commits, exactly once."""
    src = await create_topic(bootstrap, unique("ops-in"), 4)
    out = unique("ops-out")  # not created yet
    app = unique("ops-app")
    await produce_keyed(bootstrap, src, 0, 2000)
    env = StreamExecutionEnvironment(parallelism=4)
    env.enable_checkpointing(100)
    env.enable_scale_out(
        bootstrap_servers=bootstrap,
        application_id=app,
        properties={"request.timeout.ms": 1500},  # how long a send waits for the topic
    )
    build(env, bootstrap, src, out)
    client = await env.execute_async("keyed-sum")
    try:
        await asyncio.sleep(6)  # every task writing the topic failed at least once
        assert client.status is JobStatus.RUNNING
        await create_topic(bootstrap, out, 4)
        records = await read_topic(bootstrap, out, expected=2000, timeout=60, settle=1.0)
        assert client.status is JobStatus.RUNNING
    finally:
        await client.stop()  # type: ignore[attr-defined]
    check_output(records, 2000)
