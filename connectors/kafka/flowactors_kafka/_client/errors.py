"""aiokafka's exceptions turned into :class:`flowactors.ConnectorError`, chained with ``from``.

Whether an error is ``retriable`` is decided here, once, for the whole connector (see
:func:`translate_error`); the rest of the connector only ever sees ``ConnectorError``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import aiokafka.errors as kafka_errors

from flowactors import ConnectorError

R = TypeVar("R")


def translate_error(exc: BaseException, action: str) -> ConnectorError:
    """A ``ConnectorError`` for an aiokafka (or socket) error met while doing ``action``.

    ``retriable`` follows aiokafka's classification (connection and leadership problems
    are retriable; authentication, authorization and fencing are not).
    """
    if isinstance(exc, ConnectorError):
        return exc
    retriable = bool(getattr(exc, "retriable", False)) or isinstance(
        exc, ConnectionError | TimeoutError | kafka_errors.KafkaTimeoutError
    )
    name = type(exc).__name__
    detail = str(exc) or getattr(exc, "description", "") or name
    err = ConnectorError(f"Kafka: {action} failed: {name}: {detail}", retriable=retriable)
    err.__cause__ = exc
    return err


async def _translated(awaitable: Awaitable[R], action: str) -> R:
    try:
        return await awaitable
    except (kafka_errors.KafkaError, OSError, TimeoutError) as exc:
        raise translate_error(exc, action) from exc


def is_kafka_error(exc: BaseException) -> bool:
    return isinstance(exc, kafka_errors.KafkaError)
