"""aiokafka's exceptions turned into :class:`flowactors.ConnectorError`, chained with ``from``.

Whether an error is ``retriable`` is decided here, once, for the whole connector; the rest of
the connector only ever sees ``ConnectorError``. flowactors fails a job at once, whatever its
restart strategy, on a ``ConnectorError(retriable=False)``, so that verdict is kept for errors
that no retry and no restart can heal, each with what to fix (:func:`fatal_hint`):

- wrong credentials (SASL authentication) and missing permissions (authorization);
- a broker certificate the client does not trust (TLS certificate verification);
- a record larger than the topic or the client accepts;
- a broker too old for a request, and configuration the broker refuses.

Everything else is retriable: lost connections, timeouts, leadership moving, a broker
restarting, and also a producer fenced or a transaction aborted while the job runs (a restart
from the last checkpoint writes those records again). aiokafka's own ``retriable`` flag is not
used for this verdict: it answers whether the *same request* may be retried at once, and says
``False`` for many errors (its base ``KafkaError``, fencing) that a restart does heal.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Iterable
from typing import TypeVar

import aiokafka.errors as kafka_errors

from flowactors import ConnectorError

R = TypeVar("R")

_AUTHENTICATION = (
    kafka_errors.AuthenticationFailedError,
    kafka_errors.AuthenticationMethodNotSupported,
    kafka_errors.SaslAuthenticationFailed,
    kafka_errors.UnsupportedSaslMechanismError,
    kafka_errors.IllegalSaslStateError,
)
_AUTHORIZATION = (
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.GroupAuthorizationFailedError,
    kafka_errors.TransactionalIdAuthorizationFailed,
    kafka_errors.ClusterAuthorizationFailedError,
)
_TOO_LARGE = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordListTooLargeError,
)
_CONFIGURATION = (
    kafka_errors.UnsupportedVersionError,
    kafka_errors.UnsupportedForMessageFormatError,
    kafka_errors.UnsupportedCodecError,
    kafka_errors.InvalidTransactionTimeout,
    kafka_errors.InvalidRequiredAcksError,
    kafka_errors.InvalidTopicError,
)


def fatal_hint(exc: BaseException, *, trust: str | None = None) -> str | None:
    """What to fix when ``exc`` cannot heal by retrying; None when it may.

    ``trust`` describes the certificates the client trusts (``"ssl_cafile='ca.pem'"``), for
    the message of a certificate verification failure.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or str(exc)
        return (
            f"the broker's certificate is not trusted by {trust or 'the client'}: {reason}; "
            "give the CA certificate that signed the broker's (ssl_cafile=... or an "
            "ssl_context that loads it) and connect by a name the certificate is for"
        )
    if isinstance(exc, _AUTHENTICATION):
        return (
            "authentication failed: check sasl_mechanism, sasl_plain_username and "
            "sasl_plain_password (or the broker's user)"
        )
    if isinstance(exc, _AUTHORIZATION):
        return "not authorized: grant the client's principal the ACLs it needs"
    if isinstance(exc, _TOO_LARGE):
        return (
            "a record is larger than the topic accepts (its max.message.bytes) or than the "
            "producer's max_request_size: raise them or write smaller records"
        )
    if isinstance(exc, kafka_errors.InvalidTransactionTimeout):
        return (
            "transaction.timeout.ms is above the broker's transaction.max.timeout.ms "
            "(15 min by default): lower it or raise the broker's"
        )
    if isinstance(exc, _CONFIGURATION):
        return "the broker refuses this configuration or request version: fix the settings"
    return None


def translate_error(
    exc: BaseException, action: str, *, also: Iterable[BaseException] = (), trust: str | None = None
) -> ConnectorError:
    """A ``ConnectorError`` for an aiokafka (or socket) error met while doing ``action``.

    Not retriable, with what to fix, when ``exc`` or one of ``also`` (errors aiokafka logged
    on the way to ``exc``, such as the TLS error behind "Unable to bootstrap") cannot heal
    by retrying; retriable otherwise.
    """
    if isinstance(exc, ConnectorError):
        return exc
    for cause in (exc, *also):
        hint = fatal_hint(cause, trust=trust)
        if hint is not None:
            err = ConnectorError(
                f"Kafka: {action} failed: {_describe(cause)}. Not retried: {hint}",
                retriable=False,
            )
            err.__cause__ = cause
            return err
    err = ConnectorError(f"Kafka: {action} failed: {_describe(exc)}", retriable=True)
    err.__cause__ = exc
    return err


def _describe(exc: BaseException) -> str:
    name = type(exc).__name__
    return f"{name}: {str(exc) or getattr(exc, 'description', '') or name}"


async def _translated(awaitable: Awaitable[R], action: str) -> R:
    try:
        return await awaitable
    except (kafka_errors.KafkaError, OSError, TimeoutError) as exc:
        raise translate_error(exc, action) from exc


def is_record_too_large(exc: BaseException) -> bool:
    """Whether ``exc`` (or the error it was translated from) says a record is too large."""
    return isinstance(exc, _TOO_LARGE) or isinstance(exc.__cause__, _TOO_LARGE)


def is_kafka_error(exc: BaseException) -> bool:
    return isinstance(exc, kafka_errors.KafkaError)
