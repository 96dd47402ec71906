"""The public surface is deliberate: exactly these names, and each importable."""

from __future__ import annotations

import flowactors
import flowactors.spi
import flowactors.state
import flowactors.testing
import flowactors.windows

EXPECTED = {
    "RestartStrategies",
    "CorruptCheckpointError",
    "CheckpointStats",
    "CheckpointError",
    "CheckpointConfig",
    "AggregateFunction",
    "AggregatingStateDescriptor",
    "AllWindowedStream",
    "CoFlatMapFunction",
    "CoMapFunction",
    "CoProcessFunction",
    "ConnectedStreams",
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
}


def test_all_is_exactly_the_public_surface() -> None:
    assert set(flowactors.__all__) == EXPECTED
    for name in flowactors.__all__:
        assert hasattr(flowactors, name), name


def test_the_other_public_modules_export_what_they_list() -> None:
    for module in (flowactors.spi, flowactors.state, flowactors.testing, flowactors.windows):
        assert module.__all__, module.__name__
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_api_md_names_are_importable() -> None:
    # The import block at the top of shared/API.md, minus the Kafka connector.
    from flowactors import (  # noqa: F401
        AggregateFunction,
        AggregatingStateDescriptor,
        CoFlatMapFunction,
        CoProcessFunction,
        KeyedCoProcessFunction,
        KeyedProcessFunction,
        ListStateDescriptor,
        MapStateDescriptor,
        OutputTag,
        ProcessFunction,
        ProcessWindowFunction,
        ReducingStateDescriptor,
        RuntimeContext,
        StateTtlConfig,
        StreamExecutionEnvironment,
        ValueStateDescriptor,
        WatermarkGenerator,
        WatermarkStrategy,
    )
    from flowactors.windows import (  # noqa: F401
        CountTrigger,
        EventTimeSessionWindows,
        EventTimeTrigger,
        GlobalWindows,
        SlidingEventTimeWindows,
        TumblingEventTimeWindows,
        TumblingProcessingTimeWindows,
    )


def test_error_tree() -> None:
    for name in (
        "InvalidGraphError",
        "InvalidKeyError",
        "JobCancelledError",
        "JobFailedError",
        "MalformedRecordError",
        "ConnectorError",
    ):
        assert issubclass(getattr(flowactors, name), flowactors.FlowactorsError)
    assert issubclass(flowactors.InvalidGraphError, ValueError)
