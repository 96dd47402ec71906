"""The one seam between flowactors_kafka and aiokafka: typed wrappers and error translation.

aiokafka ships no type information and raises its own exception tree. Everything the
connector needs from it goes through this package, one module per client role:

- :mod:`.records`: topic-partitions, the fetched-record Protocol, Kafka's default partitioner;
- :mod:`.errors`: every aiokafka error becomes :class:`flowactors.ConnectorError` (chained
  with ``from``), and this is where ``retriable`` is decided;
- :mod:`.options`: user properties (aiokafka names or Kafka's dotted names) as aiokafka
  arguments, unknown ones refused when the job is built;
- :mod:`.connect`: connecting with exponential backoff until a deadline (errors no retry can
  fix end at once), and closes that finish even when their caller is cancelled;
- :mod:`.consumer`, :mod:`.producer`: the source's consumer and the sink's producer;
- :mod:`.transactions`: raw requests to the transaction coordinator (commit a recovered
  transaction, fence a transactional id);
- :mod:`.admin`: topics (list, wait for, create).

Only modules of this package import aiokafka (an AST test in ``tests/kafka`` enforces it);
the names below are what the rest of the connector uses.
"""

from flowactors_kafka._client.admin import create_topic, topic_max_message_bytes, wait_for_topic
from flowactors_kafka._client.connect import close_fully, connect_with_retry
from flowactors_kafka._client.consumer import Consumer
from flowactors_kafka._client.errors import is_kafka_error, is_record_too_large, translate_error
from flowactors_kafka._client.options import (
    admin_options,
    client_options,
    consumer_options_of,
    normalize_key,
    role_of,
)
from flowactors_kafka._client.producer import Producer, RecordBatch, record_size, wait_all
from flowactors_kafka._client.records import (
    Headers,
    KafkaRecord,
    TopicPartition,
    default_partition,
)
from flowactors_kafka._client.transactions import TransactionCoordinatorClient, TxnOutcome

__all__ = [
    "Consumer",
    "Headers",
    "KafkaRecord",
    "Producer",
    "RecordBatch",
    "TopicPartition",
    "TransactionCoordinatorClient",
    "TxnOutcome",
    "admin_options",
    "client_options",
    "close_fully",
    "connect_with_retry",
    "consumer_options_of",
    "create_topic",
    "default_partition",
    "is_kafka_error",
    "is_record_too_large",
    "normalize_key",
    "record_size",
    "role_of",
    "topic_max_message_bytes",
    "translate_error",
    "wait_all",
    "wait_for_topic",
]
