"""The public surface is deliberate: exactly these names, and each importable."""

from __future__ import annotations

import pickle

import flowactors
import flowactors.spi
import flowactors.state
import flowactors.testing
import flowactors.windows

EXPECTED = {
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


def test_all_is_sorted() -> None:
    for module in (
        flowactors,
        flowactors.spi,
        flowactors.state,
        flowactors.testing,
        flowactors.windows,
    ):
        assert module.__all__ == sorted(module.__all__), module.__name__


def test_classes_of_the_public_subpackages_name_them() -> None:
    for module in (flowactors.windows, flowactors.state):
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type) and name not in flowactors.__all__:
                assert obj.__module__ == module.__name__, f"{module.__name__}.{name}"


def test_public_classes_name_their_public_module() -> None:
    for name in flowactors.__all__:
        obj = getattr(flowactors, name)
        if isinstance(obj, type):
            assert obj.__module__ == "flowactors", name
    assert repr(flowactors.OutputTag("late")) == "OutputTag('late')"
    assert str(flowactors.JobFailedError).startswith("<class 'flowactors.JobFailedError'")


def test_public_objects_pickle_under_their_public_names() -> None:
    tag = flowactors.OutputTag[int]("late")
    descriptor = flowactors.ValueStateDescriptor("count", default=0)
    error = flowactors.JobFailedError("job", "map", 1, ValueError("bad"))
    for obj in (tag, descriptor):
        data = pickle.dumps(obj)
        assert b"\x8c\nflowactors\x94" in data  # the module name, alone
        assert b"flowactors.api" not in data and b"flowactors.state" not in data
    assert pickle.loads(pickle.dumps(tag)) == tag
    assert pickle.loads(pickle.dumps(descriptor)).name == "count"
    restored = pickle.loads(pickle.dumps(error))
    assert isinstance(restored, flowactors.JobFailedError) and str(restored) == str(error)
