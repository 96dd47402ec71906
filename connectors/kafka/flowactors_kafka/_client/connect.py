"""Starting and closing aiokafka clients: connecting with retries, closing under cancellation.

aiokafka logs what went wrong while bootstrapping and raises a generic "Unable to bootstrap";
a log filter collects those errors per task so that :func:`connect_with_retry` can tell an
error no retry can fix (authentication, a certificate the client does not trust) from a
broker that is merely down.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiokafka.errors as kafka_errors

from flowactors import ConnectorError
from flowactors_kafka._client.errors import translate_error

log = logging.getLogger("flowactors_kafka")


#: Errors aiokafka met while bootstrapping in this task (it logs them and raises a generic
#: "Unable to bootstrap"): how an authentication failure is told from a broker that is down.
_bootstrap_errors: contextvars.ContextVar[list[BaseException] | None] = contextvars.ContextVar(
    "flowactors_kafka_bootstrap_errors", default=None
)


class _BootstrapErrorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        sink = _bootstrap_errors.get()
        if sink is not None and isinstance(record.args, tuple):
            sink.extend(a for a in record.args if isinstance(a, BaseException))
        return True


logging.getLogger("aiokafka").addFilter(_BootstrapErrorFilter())


async def connect_with_retry(
    start: Callable[[], Awaitable[None]],
    cleanup: Callable[[], Awaitable[None]],
    *,
    what: str,
    bootstrap_servers: str,
    timeout_s: float,
    trust: str | None = None,
) -> None:
    """Run ``start`` until it succeeds, with exponential backoff (0.1 s doubling to 2 s).

    Gives up after ``timeout_s`` with a retriable :class:`ConnectorError` that names the
    servers and the last error. Errors that retrying cannot fix (authentication,
    authorization, an untrusted broker certificate, configuration the broker refuses) fail
    at once, not retriable, saying what to fix; ``trust`` describes the certificates the
    client trusts, for that message.
    """
    deadline = time.monotonic() + timeout_s
    backoff = 0.1
    attempts = 0
    while True:
        attempts += 1
        seen: list[BaseException] = []
        token = _bootstrap_errors.set(seen)
        try:
            await start()
            return
        except (kafka_errors.KafkaError, OSError, TimeoutError) as exc:
            await _quietly(cleanup())
            err = translate_error(
                exc, f"connecting the {what} to {bootstrap_servers}", also=seen, trust=trust
            )
            if not err.retriable:
                raise err from err.__cause__
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectorError(
                    f"Kafka: the {what} could not connect to {bootstrap_servers} within "
                    f"{timeout_s:g} s ({attempts} attempts); last error: "
                    f"{type(exc).__name__}: {exc}",
                    retriable=True,
                ) from exc
            log.warning(
                "%s: cannot reach Kafka at %s (%s: %s); retrying in %.1f s",
                what,
                bootstrap_servers,
                type(exc).__name__,
                exc,
                min(backoff, remaining),
            )
            await asyncio.sleep(min(backoff, remaining))
            backoff = min(backoff * 2, 2.0)
        finally:
            _bootstrap_errors.reset(token)


#: Closings still running after their caller was cancelled (strong references).
_closing: set[asyncio.Future[None]] = set()


async def close_fully(closing: Awaitable[None]) -> None:
    """Await ``closing`` and let it finish even if the caller is cancelled meanwhile: aiokafka
    leaves connections (and producers) open when its ``stop`` or ``start`` is cut short."""
    future = asyncio.ensure_future(closing)
    _closing.add(future)
    future.add_done_callback(_closing.discard)
    await asyncio.shield(future)


async def _quietly(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:
        pass
