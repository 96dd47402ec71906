"""The transaction coordinator client: committing recovered transactions and fencing ids.

The raw ``EndTxn`` and ``InitProducerId`` requests that aiokafka's producer does not expose,
sent to the coordinator of a transactional id with retries while it moves or loads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import aiokafka.errors as kafka_errors
from aiokafka.client import AIOKafkaClient, ConnectionGroup, CoordinationType
from aiokafka.protocol.transaction import EndTxnRequest, InitProducerIdRequest

from flowactors import ConnectorError
from flowactors_kafka._client.admin import _topics
from flowactors_kafka._client.connect import _quietly, connect_with_retry
from flowactors_kafka._client.errors import fatal_hint, translate_error
from flowactors_kafka._client.options import admin_options, trust_of


class TxnOutcome(NamedTuple):
    """How ending a recorded transaction went: ``"committed"`` (now or before) or ``"lost"``."""

    status: str
    detail: str


_RETRY_CODES = {
    kafka_errors.ConcurrentTransactions,
    kafka_errors.CoordinatorLoadInProgressError,
    kafka_errors.CoordinatorNotAvailableError,
    kafka_errors.NotCoordinatorError,
}


class TransactionCoordinatorClient:
    """Raw transaction requests that aiokafka's producer does not expose.

    - :meth:`commit` sends ``EndTxn(COMMIT)`` with a transactional id, producer id and epoch
      recorded in a checkpoint: it commits a transaction that a crashed process left
      pre-committed (as Flink does through reflection on the Java producer). The broker
      answers success for a transaction that is open with that epoch (it commits it) and for
      one already committed with that epoch (a retry); a higher epoch means the transaction
      was aborted since (it timed out) or its id was taken over.
    - :meth:`fence` sends ``InitProducerId`` for a transactional id: the broker aborts any
      transaction open under that id and bumps its epoch, so a zombie producer can neither
      commit nor write.
    """

    def __init__(self, bootstrap_servers: str, *, client_id: str, options: Mapping[str, Any]):
        self.bootstrap_servers = bootstrap_servers
        self._kwargs = admin_options(options)
        self._kwargs.setdefault("client_id", client_id)
        self._client: Any = None
        self.transaction_timeout_ms = int(options.get("transaction_timeout_ms", 60_000))

    async def start(self, timeout_s: float) -> None:
        async def start() -> None:
            self._client = AIOKafkaClient(bootstrap_servers=self.bootstrap_servers, **self._kwargs)
            await self._client.bootstrap()

        await connect_with_retry(
            start,
            self.stop,
            what="Kafka transaction recovery",
            bootstrap_servers=self.bootstrap_servers,
            timeout_s=timeout_s,
            trust=trust_of(self._kwargs),
        )

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _quietly(client.close())

    async def topics(self) -> set[str]:
        return await _topics(self._client)

    async def _request(
        self, transactional_id: str, build: Callable[[], Any], timeout_s: float
    ) -> Any:
        client = self._client
        assert client is not None
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                node = await client.coordinator_lookup(
                    CoordinationType.TRANSACTION, transactional_id
                )
                response = await client.send(node, build(), group=ConnectionGroup.COORDINATION)
            except (kafka_errors.KafkaError, OSError) as exc:
                if not getattr(exc, "retriable", False) or time.monotonic() > deadline:
                    raise translate_error(
                        exc, f"transaction request for {transactional_id}"
                    ) from exc
                await client.force_metadata_update()
                await asyncio.sleep(0.1)
                continue
            error = kafka_errors.for_code(response.error_code)
            if error in _RETRY_CODES and time.monotonic() < deadline:
                if error in (
                    kafka_errors.NotCoordinatorError,
                    kafka_errors.CoordinatorNotAvailableError,
                ):
                    await client.force_metadata_update()
                await asyncio.sleep(0.05)
                continue
            return response

    async def commit(
        self, transactional_id: str, producer_id: int, epoch: int, timeout_s: float = 60.0
    ) -> TxnOutcome:
        response = await self._request(
            transactional_id,
            lambda: EndTxnRequest(transactional_id, producer_id, epoch, True),
            timeout_s,
        )
        error = kafka_errors.for_code(response.error_code)
        if error is kafka_errors.NoError:
            return TxnOutcome("committed", "")
        if error in (
            kafka_errors.InvalidProducerEpoch,
            kafka_errors.ProducerFenced,
            kafka_errors.InvalidProducerIdMapping,
            kafka_errors.InvalidTxnState,
        ):
            return TxnOutcome("lost", error.__name__)
        hint = fatal_hint(error())
        raise ConnectorError(
            f"Kafka: committing recovered transaction {transactional_id} failed: "
            f"{error.__name__}" + (f". Not retried: {hint}" if hint else ""),
            retriable=hint is None,
        )

    async def fence(self, transactional_id: str, timeout_s: float = 60.0) -> tuple[int, int]:
        """Abort whatever is open under ``transactional_id``; the new (producer id, epoch)."""
        response = await self._request(
            transactional_id,
            lambda: InitProducerIdRequest(transactional_id, self.transaction_timeout_ms),
            timeout_s,
        )
        error = kafka_errors.for_code(response.error_code)
        if error is not kafka_errors.NoError:
            hint = fatal_hint(error())
            if error is kafka_errors.InvalidTransactionTimeout:
                hint = (
                    f"transaction.timeout.ms ({self.transaction_timeout_ms}) is above the "
                    "broker's transaction.max.timeout.ms (15 min by default): lower it or raise "
                    "the broker's"
                )
            raise ConnectorError(
                f"Kafka: fencing transactional id {transactional_id} failed: {error.__name__}"
                + (f". Not retried: {hint}" if hint else ""),
                retriable=hint is None,
            )
        return int(response.producer_id), int(response.producer_epoch)
