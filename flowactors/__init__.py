"""flowactors: Flink's DataStream model on asyncio.

Users import from here (and from ``flowactors.spi`` to write connectors);
every other module is an implementation detail.
"""

from flowactors.api.datastream import DataStream, DataStreamSink, KeyedStream
from flowactors.api.environment import JobClient, StreamExecutionEnvironment
from flowactors.api.functions import (
    FilterFunction,
    FlatMapFunction,
    Function,
    MapFunction,
    OutputTag,
    ProcessFunction,
    ReduceFunction,
)
from flowactors.api.sources import MalformedRecord
from flowactors.errors import (
    ConnectorError,
    FlowactorsError,
    InvalidGraphError,
    InvalidKeyError,
    JobCancelledError,
    JobFailedError,
    MalformedRecordError,
)
from flowactors.runtime.config import ExecutionConfig
from flowactors.runtime.context import RuntimeContext
from flowactors.runtime.executor import JobExecutionResult, JobMetrics, JobStatus, TaskMetrics

__version__ = "0.1.0"

__all__ = [
    "ConnectorError",
    "DataStream",
    "DataStreamSink",
    "ExecutionConfig",
    "FilterFunction",
    "FlatMapFunction",
    "FlowactorsError",
    "Function",
    "InvalidGraphError",
    "InvalidKeyError",
    "JobCancelledError",
    "JobClient",
    "JobExecutionResult",
    "JobFailedError",
    "JobMetrics",
    "JobStatus",
    "KeyedStream",
    "MalformedRecord",
    "MalformedRecordError",
    "MapFunction",
    "OutputTag",
    "ProcessFunction",
    "ReduceFunction",
    "RuntimeContext",
    "StreamExecutionEnvironment",
    "TaskMetrics",
    "__version__",
]
