"""A Kafka job scraped over HTTP: consumer lag per partition falls to 0 once caught up, and
each commit of offsets to the consumer group is timed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from flowactors_kafka import KafkaSource
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from flowactors import StreamExecutionEnvironment
from flowactors.monitoring import MonitoringServer
from tests.kafka._kafka import create_topic, produce_json, unique

pytestmark = pytest.mark.kafka

RECORDS = 20_000


async def scrape(url: str) -> dict[str, list[Sample]]:
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as response:
        text = await response.text()
    return {f.name: list(f.samples) for f in text_string_to_metric_families(text)}


async def test_consumer_lag_falls_to_zero_and_commits_are_timed(
    bootstrap: str, tmp_path: Path
) -> None:
    topic = unique("lag")
    await create_topic(bootstrap, topic, 4)
    await produce_json(bootstrap, topic, [{"i": i} for i in range(RECORDS)])
    env = StreamExecutionEnvironment(parallelism=2)
    env.enable_checkpointing(100, storage=tmp_path / "checkpoints")
    source = KafkaSource(
        bootstrap_servers=bootstrap,
        topics=[topic],
        group_id=unique("g"),
        value_deserializer="json",
        max_records_per_poll=500,
    )

    async def slowly(record: dict[str, int]) -> bool:
        if record["i"] % 100 == 0:
            await asyncio.sleep(0.01)  # about 2 s to catch up: long enough to see the lag
        return False

    env.from_source(source, name="kafka").filter(slowly).print()
    client = await env.execute_async("lag")
    server = MonitoringServer(client, port=0)
    await server.start()
    try:
        seen_behind = False
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            families = await scrape(server.url)
            lags = {
                (s.labels["topic"], s.labels["partition"]): s.value
                for s in families.get("flowactors_consumer_lag_records", [])
            }
            seen_behind = seen_behind or any(v > 0 for v in lags.values())
            read = sum(
                s.value
                for s in families["flowactors_records_in"]
                if s.labels["operator"] == "kafka"  # the source operator: records read
            )
            if len(lags) == 4 and read == RECORDS and not any(lags.values()):
                break
            assert asyncio.get_running_loop().time() < deadline, (lags, read)
            await asyncio.sleep(0.05)
        assert {p for _, p in lags} == {"0", "1", "2", "3"}
        assert seen_behind, "the job never lagged: the test would not show the lag falling"
        while not families.get("flowactors_offset_commit_seconds"):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.1)
            families = await scrape(server.url)
        commits = families["flowactors_offset_commit_seconds"]
        assert {s.labels["subtask"] for s in commits} == {"0", "1"}
        assert all(0 < s.value < 10 for s in commits)
    finally:
        await server.stop()
        await client.cancel()
