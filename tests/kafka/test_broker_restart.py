"""A broker restarted in the middle of an exactly-once job: no loss, no duplicates."""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from flowactors_kafka import KafkaSink, KafkaSource

from flowactors import RestartStrategies, StreamExecutionEnvironment
from tests.kafka._e2e_worker import RunningCount
from tests.kafka._kafka import create_topic, output_offsets, produce, read_topic, unique
from tests.kafka.conftest import broker_dir, restart_broker, start_broker, stop_broker

pytestmark = pytest.mark.kafka

RECORDS = 100_000
KEYS = 500


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_broker_restart_mid_job_exactly_once(tmp_path: Path) -> None:
    # A broker of its own: the shared one must not go down under other tests.
    directory = broker_dir()
    broker = await asyncio.to_thread(start_broker, directory)
    bootstrap = broker.bootstrap
    try:
        inp, out = unique("restart-in"), unique("restart-out")
        await create_topic(bootstrap, inp, 4)
        await create_topic(bootstrap, out, 4)
        pairs = (
            (str(i % KEYS).encode(), orjson.dumps({"i": i, "k": i % KEYS})) for i in range(RECORDS)
        )
        await produce(bootstrap, inp, pairs, partitions=4)

        env = StreamExecutionEnvironment(parallelism=2)
        env.enable_checkpointing(200, storage=tmp_path / "checkpoints")
        env.set_restart_strategy(RestartStrategies.fixed_delay(30, 1000))
        source = KafkaSource(
            bootstrap_servers=bootstrap,
            topics=[inp],
            value_deserializer="json",
            bounded="latest",
            startup_timeout=timedelta(seconds=10),
        )
        sink = KafkaSink(
            bootstrap_servers=bootstrap,
            topic=out,
            value_serializer="json",
            delivery_guarantee="exactly-once",
            transactional_id_prefix=unique("restart"),
            properties={"request_timeout_ms": 5000},
            startup_timeout=timedelta(seconds=10),
        )
        (
            env.from_source(source, name="input")
            .key_by(lambda r: r["k"])
            .process(RunningCount())
            .sink_to(sink, name="output")
        )

        client = await env.execute_async("broker-restart")
        # Down while transactions are open, pre-committed and committing: typically the job
        # fails (a checkpoint cannot complete), restarts, waits for the broker at startup,
        # commits what its checkpoint recorded and carries on; or it just waits it out.
        while await output_offsets(bootstrap, out) < RECORDS // 5:
            await asyncio.sleep(0.05)
        await asyncio.to_thread(restart_broker, broker, 2.0)
        await asyncio.wait_for(client.wait(), 180)

        got = await read_topic(bootstrap, out, expected=RECORDS, settle=1.0, timeout=60)
        seen = Counter((v["i"], v["k"], v["n"]) for v in (orjson.loads(r.value) for r in got))
        expected = {(i, i % KEYS, i // KEYS + 1) for i in range(RECORDS)}
        duplicates = [r for r, c in seen.items() if c > 1]
        assert not duplicates, f"{len(duplicates)} duplicates, e.g. {duplicates[:3]}"
        assert set(seen) == expected, (
            f"{len(expected - set(seen))} missing, {len(set(seen) - expected)} unexpected"
        )
    finally:
        await asyncio.to_thread(stop_broker, broker)
        shutil.rmtree(directory, ignore_errors=True)
