"""User properties (aiokafka argument names or Kafka's dotted Java names) as aiokafka arguments.

Unknown keys are refused when the job is built; a typo must never be silently ignored.
"""

from __future__ import annotations

import inspect
import re
import ssl
import weakref
from collections.abc import Mapping
from typing import Any

import aiokafka
from aiokafka.client import AIOKafkaClient
from aiokafka.helpers import create_ssl_context

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


#: PEM files for TLS, turned into an ``ssl_context`` (aiokafka takes only a context).
_TLS_FILES = {"ssl_cafile": "cafile", "ssl_certfile": "certfile", "ssl_keyfile": "keyfile"}
#: What each context built from ``ssl_cafile`` trusts, for error messages.
_TRUST: weakref.WeakKeyDictionary[ssl.SSLContext, str] = weakref.WeakKeyDictionary()


def trust_of(options: Mapping[str, Any]) -> str | None:
    """The certificates a client built with ``options`` trusts, in words (None without TLS)."""
    context = options.get("ssl_context")
    if context is None:
        return None
    return _TRUST.get(context, "the ssl_context given (its CA certificates)")


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
    tls_files: dict[str, str] = {}
    for raw_key, value in properties.items():
        key = normalize_key(raw_key)
        if key in _TLS_FILES:
            tls_files[_TLS_FILES[key]] = str(value)
            continue
        if key.startswith(("ssl_truststore", "ssl_keystore")):
            raise ValueError(
                f"Kafka property {raw_key!r} is Java's: give PEM files as ssl_cafile=... "
                "(and ssl_certfile=..., ssl_keyfile=... for a client certificate), or an "
                "ssl_context"
            )
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
    if tls_files:
        if "ssl_context" in out:
            raise ValueError("give ssl_context or ssl_cafile/ssl_certfile/ssl_keyfile, not both")
        try:
            context = create_ssl_context(**tls_files)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load the TLS files {tls_files}: {exc}") from exc
        _TRUST[context] = (
            f"ssl_cafile={tls_files['cafile']!r}"
            if "cafile" in tls_files
            else "the system's default CA certificates"
        )
        out["ssl_context"] = context
    if "ssl_context" in out and out.get("security_protocol") not in ("SSL", "SASL_SSL"):
        raise ValueError(
            "TLS settings (ssl_context, ssl_cafile) have no effect without "
            "security_protocol='SSL' or 'SASL_SSL'"
        )
    return out


def consumer_options_of(options: Mapping[str, Any]) -> dict[str, Any]:
    """The consumer arguments among producer ones (security and timeouts carry over)."""
    return {k: v for k, v in options.items() if k in _CONSUMER_PARAMS and k != "loop"}


def admin_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of consumer/producer options a bare client takes (security, timeouts)."""
    return {k: v for k, v in options.items() if k in _CLIENT_PARAMS and k != "loop"}
