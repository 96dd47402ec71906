"""The public surface is deliberate: exactly these names, and each importable."""

from __future__ import annotations

import flowactors
import flowactors.spi

EXPECTED = {
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
}


def test_all_is_exactly_the_public_surface() -> None:
    assert set(flowactors.__all__) == EXPECTED
    for name in flowactors.__all__:
        assert hasattr(flowactors, name), name


def test_spi_exports() -> None:
    for name in flowactors.spi.__all__:
        assert hasattr(flowactors.spi, name), name


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
