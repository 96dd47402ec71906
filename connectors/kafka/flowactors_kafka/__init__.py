"""Apache Kafka for flowactors: ``KafkaSource`` and ``KafkaSink`` (exactly-once capable).

A separate distribution (``pip install flowactors-kafka``) built only on flowactors' public
source/sink interfaces (:mod:`flowactors.spi`); aiokafka does the talking, behind one typed
seam (:mod:`flowactors_kafka._client`) that turns its errors into
:class:`flowactors.ConnectorError`.

::

    source = KafkaSource(bootstrap_servers=bs, topics=["rides"], group_id="g",
                         starting_offsets="earliest", value_deserializer=orjson.loads)
    sink = KafkaSink(bootstrap_servers=bs, topic="out", value_serializer=orjson.dumps,
                     delivery_guarantee="exactly-once", transactional_id_prefix="job-1")
    env.from_source(source, strategy, name="rides").map(f).sink_to(sink)

Flink's builders (``KafkaSource.builder()...build()``) remain, as aliases of the constructors.
"""

from flowactors_kafka._client import KafkaRecord, TopicPartition, create_topic
from flowactors_kafka._offsets import KafkaOffsetsInitializer
from flowactors_kafka._reader import partition_owner
from flowactors_kafka._serialization import (
    bytes_deserializer,
    bytes_serializer,
    json_deserializer,
    json_serializer,
    string_deserializer,
    string_serializer,
)
from flowactors_kafka._sink import KafkaSink, KafkaSinkBuilder
from flowactors_kafka._source import KafkaSource, KafkaSourceBuilder
from flowactors_kafka._writer import DeliveryGuarantee

__version__ = "0.1.0"

__all__ = [
    "DeliveryGuarantee",
    "KafkaOffsetsInitializer",
    "KafkaRecord",
    "KafkaSink",
    "KafkaSinkBuilder",
    "KafkaSource",
    "KafkaSourceBuilder",
    "TopicPartition",
    "__version__",
    "bytes_deserializer",
    "bytes_serializer",
    "create_topic",
    "json_deserializer",
    "json_serializer",
    "partition_owner",
    "string_deserializer",
    "string_serializer",
]
