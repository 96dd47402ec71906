"""flowactors: Flink's DataStream model on asyncio.

Users import from here (and from ``flowactors.spi`` to write connectors);
every other module is an implementation detail.
"""

from flowactors.api.connected import ConnectedStreams
from flowactors.api.datastream import DataStream, DataStreamSink, KeyedStream
from flowactors.api.environment import JobClient, StreamExecutionEnvironment
from flowactors.api.functions import (
    AggregateFunction,
    CoFlatMapFunction,
    CoMapFunction,
    CoProcessFunction,
    FilterFunction,
    FlatMapFunction,
    Function,
    KeyedCoProcessFunction,
    KeyedProcessFunction,
    MapFunction,
    OutputTag,
    ProcessAllWindowFunction,
    ProcessFunction,
    ProcessJoinFunction,
    ProcessWindowFunction,
    ReduceFunction,
)
from flowactors.api.sources import MalformedRecord
from flowactors.api.windowed import AllWindowedStream, WindowedStream
from flowactors.checkpoint.config import CheckpointConfig, RestartStrategies
from flowactors.checkpoint.coordinator import CheckpointStats
from flowactors.errors import (
    CheckpointError,
    ConnectorError,
    CorruptCheckpointError,
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
from flowactors.runtime.timers import TimeDomain, TimerService
from flowactors.state.descriptors import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateTtlConfig,
    ValueStateDescriptor,
)
from flowactors.time.watermarks import WatermarkGenerator, WatermarkOutput, WatermarkStrategy

__version__ = "0.1.0"

__all__ = [
    "RestartStrategies",
    "CorruptCheckpointError",
    "CheckpointStats",
    "CheckpointError",
    "CheckpointConfig",
    "ConnectedStreams",
    "AggregateFunction",
    "AggregatingStateDescriptor",
    "AllWindowedStream",
    "CoFlatMapFunction",
    "CoMapFunction",
    "CoProcessFunction",
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
    "KeyedCoProcessFunction",
    "KeyedProcessFunction",
    "KeyedStream",
    "ListStateDescriptor",
    "MalformedRecord",
    "MalformedRecordError",
    "MapFunction",
    "MapStateDescriptor",
    "OutputTag",
    "ProcessAllWindowFunction",
    "ProcessFunction",
    "ProcessJoinFunction",
    "ProcessWindowFunction",
    "ReduceFunction",
    "ReducingStateDescriptor",
    "RuntimeContext",
    "StateTtlConfig",
    "StreamExecutionEnvironment",
    "TaskMetrics",
    "TimeDomain",
    "TimerService",
    "ValueStateDescriptor",
    "WatermarkGenerator",
    "WatermarkOutput",
    "WatermarkStrategy",
    "WindowedStream",
    "__version__",
]
