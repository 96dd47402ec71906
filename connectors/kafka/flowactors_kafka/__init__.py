"""Apache Kafka for flowactors: ``KafkaSource`` and ``KafkaSink`` (exactly-once capable).

A separate distribution (``pip install flowactors-kafka``) built only on flowactors' public
source/sink interfaces (:mod:`flowactors.spi`); aiokafka does the talking, behind one typed
seam (:mod:`flowactors_kafka._client`) that turns its errors into
:class:`flowactors.ConnectorError`.

::

    source = (KafkaSource.builder().set_bootstrap_servers(bs).set_topics("rides")
              .set_group_id("g").set_starting_offsets(KafkaOffsetsInitializer.earliest())
              .set_value_only_deserializer("json").build())
    sink = (KafkaSink.builder().set_bootstrap_servers(bs)
            .set_record_serializer(topic="out", value_serializer="json")
            .set_delivery_guarantee("exactly-once").set_transactional_id_prefix("job-1")
            .build())
    env.from_source(source, strategy, name="rides").map(f).sink_to(sink)
"""

from flowactors_kafka._client import KafkaRecord, TopicPartition, create_topic
from flowactors_kafka._offsets import KafkaOffsetsInitializer
from flowactors_kafka._serialization import (
    bytes_deserializer,
    bytes_serializer,
    json_deserializer,
    json_serializer,
    string_deserializer,
    string_serializer,
)
from flowactors_kafka._sink import DeliveryGuarantee, KafkaSink, KafkaSinkBuilder
from flowactors_kafka._source import KafkaSource, KafkaSourceBuilder, partition_owner

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
