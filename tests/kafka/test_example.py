"""The Kafka long-ride-alerts example against the session's broker."""

from __future__ import annotations

from pathlib import Path

import pytest
from flowactors_kafka import create_topic

from examples.kafka_long_ride_alerts import alerts_job, expected_alerts, read_alerts
from examples.kafka_publish_rides import publish_rides
from tests.kafka._kafka import unique

pytestmark = pytest.mark.kafka


async def test_long_ride_alerts_from_kafka_to_kafka_exactly_once(
    bootstrap: str, tmp_path: Path
) -> None:
    rides, alerts = unique("rides"), unique("alerts")
    await create_topic(bootstrap, alerts, 2)
    await publish_rides(bootstrap, 3000, topic=rides, partitions=4)
    env = alerts_job(
        bootstrap,
        tmp_path / "checkpoints",
        rides_topic=rides,
        alerts_topic=alerts,
        transactional_id_prefix=unique("alerts"),
    )
    await env.execute("long ride alerts")
    got = await read_alerts(bootstrap, alerts)
    expected = await expected_alerts(3000)
    assert got == expected and len(expected) > 10
