"""User properties (aiokafka argument names or Kafka's dotted Java names) as aiokafka arguments.

Unknown keys are refused when the job is built; a typo must never be silently ignored.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from typing import Any

import aiokafka
from aiokafka.client import AIOKafkaClient

#: Kafka's Java property names whose aiokafka argument is not just the dotted name with "_".
_ALIASES = {
    "batch_size": "max_batch_size",
    "sasl_username": "sasl_plain_username",
    "sasl_password": "sasl_plain_password",
    "sasl_mechanisms": "sasl_mechanism",
}
#: Arguments the connector sets itself, never through properties (those a user may mean are
#: mapped or refused with a better message by :mod:`flowactors_kafka._properties` first).
_MANAGED = {
    "loop",
    "bootstrap_servers",
    "group_id",
    "enable_auto_commit",
    "transactional_id",
    "key_deserializer",
    "value_deserializer",
    "key_serializer",
    "value_serializer",
    "partitioner",
    "api_version",
}


def _parameters(cls: type) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(cls).parameters)


_CONSUMER_PARAMS = _parameters(aiokafka.AIOKafkaConsumer)
_PRODUCER_PARAMS = _parameters(aiokafka.AIOKafkaProducer)
_CLIENT_PARAMS = _parameters(AIOKafkaClient)


def normalize_key(raw_key: str) -> str:
    """The aiokafka argument name for a property key (``"batch.size"`` -> ``"max_batch_size"``)."""
    key = raw_key.replace(".", "_").replace("-", "_")
    return _ALIASES.get(key, key)


def role_of(key: str) -> str | None:
    """``"consumer"``, ``"producer"`` or ``"both"`` for a normalized key; None if unknown."""
    consumer, producer = key in _CONSUMER_PARAMS, key in _PRODUCER_PARAMS
    if consumer and producer:
        return "both"
    return "consumer" if consumer else "producer" if producer else None


def client_options(
    properties: Mapping[str, Any], role: str, *, foreign: str | None = None
) -> dict[str, Any]:
    """aiokafka keyword arguments for ``role`` ("consumer" or "producer") from user properties.

    Keys may be aiokafka's argument names (``ssl_context``, ``sasl_mechanism``) or Kafka's
    dotted names (``security.protocol``, ``isolation.level``, ``max.poll.records``).
    Strings as Java properties files hold them (``"500"``, ``"true"``) become ints and bools
    where aiokafka does not expect a string. Unknown keys raise
    ``ValueError`` (a typo must not be silently ignored). A key of the other role only is
    skipped when ``foreign`` is None (a client of that role takes it), else refused with
    ``foreign`` as the explanation.
    """
    params = _CONSUMER_PARAMS if role == "consumer" else _PRODUCER_PARAMS
    out: dict[str, Any] = {}
    for raw_key, value in properties.items():
        key = normalize_key(raw_key)
        if key in _MANAGED:
            raise ValueError(
                f"Kafka property {raw_key!r} is set by the connector (use the constructor's "
                "arguments)"
            )
        if key not in params:
            other = _PRODUCER_PARAMS if role == "consumer" else _CONSUMER_PARAMS
            if key in other:
                if foreign is None:
                    continue
                raise ValueError(f"Kafka property {raw_key!r} is not a {role} setting: {foreign}")
            raise ValueError(f"unknown Kafka property {raw_key!r} (aiokafka has no {key!r})")
        default = params[key].default
        if isinstance(value, str) and not isinstance(default, str):
            if isinstance(default, bool) and value.lower() in ("true", "false"):
                value = value.lower() == "true"
            elif re.fullmatch(r"-?\d+", value):
                value = int(value)
        out[key] = value
    return out


def consumer_options_of(options: Mapping[str, Any]) -> dict[str, Any]:
    """The consumer arguments among producer ones (security and timeouts carry over)."""
    return {k: v for k, v in options.items() if k in _CONSUMER_PARAMS and k != "loop"}


def admin_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of consumer/producer options a bare client takes (security, timeouts)."""
    return {k: v for k, v in options.items() if k in _CLIENT_PARAMS and k != "loop"}
