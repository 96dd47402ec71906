"""The dead-letter topic: records that do not deserialize, with why and where they came from.

A dead letter keeps the record's key and value and carries headers: ``flowactors.error``
(the deserializer's exception, at most :data:`MAX_REASON_BYTES` bytes), ``flowactors.topic``,
``flowactors.partition`` and ``flowactors.offset``.

Invariant: writing a dead letter never fails the job for the record's size. The input topic
may take records larger than the dead-letter topic (its ``max.message.bytes``) or the
producer (``max_request_size``) does; such a value is cut to fit, and the headers
``flowactors.truncated`` (``value``, or ``key,value``) and ``flowactors.original-size`` (the
value's size in bytes) say so. The limit is read from the topic at start; should the broker
still refuse a dead letter as too large (the topic's limit could not be read, or changed),
the budget is halved until it fits.

Dead letters are awaited before the reader goes on, so one is durable before a checkpoint can
cover its offset: at least once.
"""

from __future__ import annotations

import logging
from typing import Any

from flowactors_kafka._client import (
    Headers,
    Producer,
    is_record_too_large,
    record_size,
    topic_max_message_bytes,
)

log = logging.getLogger("flowactors_kafka")

#: The longest ``flowactors.error`` header, in bytes (an exception may quote the whole record).
MAX_REASON_BYTES = 1000
#: Room kept for what the size estimate cannot know exactly (varint lengths, a header more).
_MARGIN = 128


def bounded_reason(reason: str) -> bytes:
    """``reason`` in UTF-8, cut to at most :data:`MAX_REASON_BYTES` bytes (marked with …)."""
    data = reason.encode("utf-8", "replace")
    if len(data) <= MAX_REASON_BYTES:
        return data
    marker = "…".encode()
    cut = data[: MAX_REASON_BYTES - len(marker)].decode("utf-8", "ignore").encode("utf-8")
    return cut + marker


class DeadLetterWriter:
    """Writes dead letters to one topic through its own producer."""

    def __init__(self, producer: Producer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        #: The largest record batch the producer and the topic both take.
        self.limit = producer.max_request_size
        self.written = 0
        self.truncated = 0

    async def start(self, timeout_s: float) -> None:
        p = self.producer
        await p.start(timeout_s)
        topic_limit = await topic_max_message_bytes(
            p.bootstrap_servers, self.topic, options=p.options, timeout_s=timeout_s
        )
        if topic_limit is not None:
            self.limit = min(self.limit, topic_limit)

    async def close(self) -> None:
        await self.producer.abandon()

    async def write(self, record: Any, reason: str) -> None:
        headers: Headers = [
            ("flowactors.error", bounded_reason(reason)),
            ("flowactors.topic", str(record.topic).encode()),
            ("flowactors.partition", str(record.partition).encode()),
            ("flowactors.offset", str(record.offset).encode()),
        ]
        key: bytes | None = record.key
        value: bytes | None = record.value
        limit = self.limit
        while True:
            letter_key, letter_value, letter_headers = _fit(key, value, headers, limit)
            try:
                await self.producer.send_and_wait(
                    self.topic, letter_value, letter_key, letter_headers
                )
            except Exception as exc:
                if not is_record_too_large(exc) or limit <= 2 * _MARGIN:
                    raise
                limit //= 2
                log.warning(
                    "Kafka: dead letter for %s/%s@%s refused as too large; trying %d bytes",
                    record.topic,
                    record.partition,
                    record.offset,
                    limit,
                )
                continue
            self.written += 1
            if letter_value is not value or letter_key is not key:
                self.truncated += 1
            return


def _fit(
    key: bytes | None, value: bytes | None, headers: Headers, limit: int
) -> tuple[bytes | None, bytes | None, Headers]:
    """Key, value and headers of a dead letter whose record batch is at most ``limit`` bytes."""
    if record_size(key, value, headers) + _MARGIN <= limit:
        return key, value, headers
    size = len(value) if value is not None else 0
    cut = ["value"]
    if key is not None and record_size(key, b"", headers) + 2 * _MARGIN > limit:
        key = key[: max(0, limit // 4)]
        cut.insert(0, "key")
    headers = [
        *headers,
        ("flowactors.truncated", ",".join(cut).encode()),
        ("flowactors.original-size", str(size).encode()),
    ]
    room = limit - record_size(key, b"", headers) - _MARGIN
    return key, (value or b"")[: max(0, room)], headers
