"""flowactors: Flink's DataStream model on asyncio.

Users import from here (and from ``flowactors.windows``, ``flowactors.state``,
``flowactors.testing``; connector authors from ``flowactors.spi``); every other
module is an implementation detail. The public classes name this package as
their module, so reprs, pickles and error messages show ``flowactors.X``.
"""

from flowactors._public import adopt
from flowactors.api.connected import ConnectedStreams
from flowactors.api.contexts import (
    Collector,
    Context,
    JoinContext,
    KeyedContext,
    KeyedStateStore,
    OnTimerContext,
    ProcessWindowContext,
    TimerService,
)
from flowactors.api.datastream import DataStream, DataStreamSink, JobStream, KeyedStream
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
    ProcessAllWindowFunction,
    ProcessFunction,
    ProcessJoinFunction,
    ProcessWindowFunction,
    ReduceFunction,
)
from flowactors.api.output_tag import OutputTag
from flowactors.api.settings import CheckpointConfigView, ExecutionConfigView
from flowactors.api.sources import MalformedRecord
from flowactors.api.windowed import AllWindowedStream, WindowedStream
from flowactors.checkpoint.config import CheckpointConfig, RestartStrategies, RestartStrategy
from flowactors.checkpoint.coordinator import CheckpointStats
from flowactors.errors import (
    CheckpointError,
    ConnectorError,
    CorruptCheckpointError,
    FlowactorsError,
    IncompatibleSnapshotError,
    InvalidGraphError,
    InvalidKeyError,
    JobCancelledError,
    JobFailedError,
    MalformedRecordError,
    NoValidCheckpointError,
    StateError,
)
from flowactors.runtime.config import ExecutionConfig
from flowactors.runtime.context import RuntimeContext
from flowactors.runtime.executor import JobExecutionResult, JobStatus
from flowactors.runtime.live_state import KeyedStateView
from flowactors.runtime.metrics import JobMetrics, TaskMetrics
from flowactors.runtime.timers import TimeDomain
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
    "AggregateFunction",
    "AggregatingStateDescriptor",
    "AllWindowedStream",
    "CheckpointConfig",
    "CheckpointConfigView",
    "CheckpointError",
    "CheckpointStats",
    "CoFlatMapFunction",
    "CoMapFunction",
    "CoProcessFunction",
    "Collector",
    "ConnectedStreams",
    "ConnectorError",
    "Context",
    "CorruptCheckpointError",
    "DataStream",
    "DataStreamSink",
    "ExecutionConfig",
    "ExecutionConfigView",
    "FilterFunction",
    "FlatMapFunction",
    "FlowactorsError",
    "Function",
    "IncompatibleSnapshotError",
    "InvalidGraphError",
    "InvalidKeyError",
    "JobCancelledError",
    "JobClient",
    "JobExecutionResult",
    "JobFailedError",
    "JobMetrics",
    "JobStatus",
    "JobStream",
    "JoinContext",
    "KeyedCoProcessFunction",
    "KeyedContext",
    "KeyedProcessFunction",
    "KeyedStateStore",
    "KeyedStateView",
    "KeyedStream",
    "ListStateDescriptor",
    "MalformedRecord",
    "MalformedRecordError",
    "MapFunction",
    "MapStateDescriptor",
    "NoValidCheckpointError",
    "OnTimerContext",
    "OutputTag",
    "ProcessAllWindowFunction",
    "ProcessFunction",
    "ProcessJoinFunction",
    "ProcessWindowContext",
    "ProcessWindowFunction",
    "ReduceFunction",
    "ReducingStateDescriptor",
    "RestartStrategies",
    "RestartStrategy",
    "RuntimeContext",
    "StateError",
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

adopt(globals(), __name__)
