"""Topics: listing them, waiting for one to exist, creating one (the admin client)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiokafka.errors as kafka_errors

from flowactors import ConnectorError
from flowactors_kafka._client.connect import _quietly, connect_with_retry, log
from flowactors_kafka._client.errors import _translated, translate_error
from flowactors_kafka._client.options import admin_options, client_options, trust_of


async def _topics(client: Any) -> set[str]:
    cluster = await _translated(client.fetch_all_metadata(), "reading metadata")
    return set(cluster.topics(exclude_internal_topics=True))


async def wait_for_topic(
    topics: Callable[[], Awaitable[set[str]]], topic: str, *, servers: str, timeout_s: float
) -> None:
    """Return once ``topic`` exists; a ``ConnectorError`` after ``timeout_s`` if it does not
    (rather than aiokafka's wait of ``request_timeout_ms`` at the first record).

    Retriable: a broker that is still starting lists no topics yet, and a topic can be
    created while the job waits to restart.
    """
    deadline = time.monotonic() + timeout_s
    while topic not in await topics():
        if time.monotonic() >= deadline:
            raise ConnectorError(
                f"Kafka: topic {topic!r} does not exist on {servers} (waited {timeout_s:g} s); "
                "create it, or fix the topic's name",
                retriable=True,
            )
        await asyncio.sleep(0.2)


async def create_topic(
    bootstrap_servers: str,
    topic: str,
    partitions: int,
    *,
    replication_factor: int = 1,
    properties: Mapping[str, Any] | None = None,
    exist_ok: bool = True,
    timeout_s: float = 30.0,
) -> bool:
    """Create ``topic`` with ``partitions`` partitions; whether it was created (``False``:
    it existed and ``exist_ok``). ``properties`` as for the builders (security settings)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    options = admin_options(client_options(properties or {}, "consumer"))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **options)

    async def start() -> None:
        await admin.start()

    await connect_with_retry(
        start,
        _noop,
        what="Kafka admin client",
        bootstrap_servers=bootstrap_servers,
        timeout_s=timeout_s,
        trust=trust_of(options),
    )
    try:
        response = await admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor)]
        )
        for entry in response.topic_errors:
            error = kafka_errors.for_code(entry[1])
            if error is kafka_errors.NoError:
                continue
            if error is kafka_errors.TopicAlreadyExistsError and exist_ok:
                return False
            raise error(f"{topic}: {entry[2] if len(entry) > 2 else ''}")
        return True
    except (kafka_errors.KafkaError, OSError) as exc:
        raise translate_error(exc, f"creating topic {topic!r}") from exc
    finally:
        await _quietly(admin.close())


async def _noop() -> None:
    return None


async def topic_max_message_bytes(
    bootstrap_servers: str, topic: str, *, options: Mapping[str, Any], timeout_s: float
) -> int | None:
    """The topic's ``max.message.bytes`` (the largest record batch it takes); None if it
    cannot be read (no permission to describe the topic, an old broker)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **admin_options(options))
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        responses = await asyncio.wait_for(
            admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": None})]
            ),
            timeout_s,
        )
        for response in responses:
            for resource in response.resources:
                error_code, entries = resource[0], resource[4]
                if error_code:
                    continue
                for entry in entries:
                    if entry[0] == "max.message.bytes" and entry[1] is not None:
                        return int(entry[1])
    except (kafka_errors.KafkaError, OSError, TimeoutError, ValueError, IndexError) as exc:
        log.info("Kafka: cannot read max.message.bytes of %s: %r", topic, exc)
    finally:
        await _quietly(admin.close())
    return None
