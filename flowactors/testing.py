"""Test harnesses: drive one operator by hand, without a job or an event loop.

Like Flink's ``KeyedOneInputStreamOperatorTestHarness``: feed elements with
timestamps and watermarks, move a manual processing-time clock, and read what
came out (records with their timestamps, and watermarks), along with the number
of registered timers and keyed state entries. Everything runs synchronously on
a private event loop, so tests need no asyncio plumbing.

>>> from flowactors import KeyedProcessFunction, ValueStateDescriptor
>>> class CountPerKey(KeyedProcessFunction):
...     def open(self, ctx):
...         self.count = ctx.get_state(ValueStateDescriptor("count", default=0))
...     def process_element(self, value, ctx, out):
...         self.count.update(self.count.value() + 1)
...         out.collect((ctx.get_current_key(), self.count.value()))
>>> harness = KeyedOneInputStreamOperatorTestHarness(CountPerKey(), key_selector=lambda v: v)
>>> harness.process_element("a", 10)
>>> harness.process_element("a", 11)
>>> harness.extract_output_values()
[('a', 1), ('a', 2)]
>>> harness.num_keyed_state_entries()
1
>>> harness.close()
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Self, TypeVar

from flowactors.checkpoint.config import PICKLE
from flowactors.checkpoint.snapshot import RestoreView, merge_subtask_part, write_subtask_snapshot
from flowactors.checkpoint.storage import (
    CompletedCheckpoint,
    metadata_for,
    write_metadata_atomically,
)
from flowactors.runtime.config import ExecutionConfig
from flowactors.runtime.context import OperatorContext
from flowactors.runtime.keyed import KeyedOperator, KeyedProcessOperator
from flowactors.runtime.operators import Output, StreamOperator, Timestamps, Values
from flowactors.runtime.stateless import ProcessOperator
from flowactors.runtime.two_input import CO_PROCESS, CoOperator
from flowactors.runtime.valve import WatermarkValve
from flowactors.runtime.window_contents import (
    AggregateContents,
    EvictingContents,
    ListContents,
    ReduceContents,
    WindowContents,
)
from flowactors.runtime.window_operator import WindowOperator
from flowactors.state.keygroups import DEFAULT_MAX_PARALLELISM
from flowactors.time import to_millis
from flowactors.time.clock import ManualClock, ManualProcessingTimeService
from flowactors.windows.assigners import WindowAssigner
from flowactors.windows.evictors import Evictor
from flowactors.windows.triggers import Trigger

R = TypeVar("R")

_UID = "test"


@dataclass(frozen=True)
class StreamRecord:
    """A record the operator emitted, with its timestamp (``None`` if it has none)."""

    value: Any
    timestamp: int | None = None


@dataclass(frozen=True)
class Watermark:
    """A watermark the operator emitted."""

    timestamp: int


class _Capture(StreamOperator):
    def __init__(self, sink: list[StreamRecord | Watermark]) -> None:
        super().__init__()
        self.sink = sink

    async def process_batch(
        self, values: Values, timestamps: Timestamps, keys: Values | None = None
    ) -> None:
        stamps = timestamps if timestamps is not None else [None] * len(values)
        self.sink.extend(StreamRecord(v, t) for v, t in zip(values, stamps))

    async def process_watermark(self, timestamp: int) -> None:
        self.sink.append(Watermark(timestamp))

    async def process_watermark_status(self, idle: bool) -> None:
        pass


class _SideOutputs(dict[Any, Output]):
    """Creates a capturing output for any side-output tag the operator uses."""

    def __init__(self, captured: dict[Any, list[StreamRecord | Watermark]]) -> None:
        super().__init__()
        self.captured = captured

    def get(self, tag: Any, default: Any = None) -> Output:
        out = super().get(tag)
        if out is None:
            out = Output()
            out.operators.append(_Capture(self.captured.setdefault(tag, [])))
            out.seal()
            self[tag] = out
        return out


class OperatorSnapshot:
    """A harness's snapshot of its operator: a complete checkpoint on disk, for
    :meth:`restore` into a new harness (at another parallelism or subtask too)."""

    def __init__(self, checkpoint_id: int) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="flowactors-harness-")
        self.checkpoint_id = checkpoint_id

    @property
    def path(self) -> Path:
        return Path(self._directory.name)

    def discard(self) -> None:
        self._directory.cleanup()


class _Harness:
    def __init__(
        self,
        operator: StreamOperator,
        *,
        parallelism: int = 1,
        subtask_index: int = 0,
        max_parallelism: int = DEFAULT_MAX_PARALLELISM,
        processing_time: int = 0,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self.operator = operator
        self.clock = ManualProcessingTimeService(processing_time)
        self._control: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._output: list[StreamRecord | Watermark] = []
        self._side: dict[Any, list[StreamRecord | Watermark]] = {}
        operator.setup(
            OperatorContext(
                job_name="test",
                operator_name=type(operator).__name__,
                uid=_UID,
                subtask_index=subtask_index,
                parallelism=parallelism,
                max_parallelism=max_parallelism,
                config=ExecutionConfig(),
                post_control=self._control.append,
                processing_time=self.clock,
            )
        )
        operator.output.operators.append(_Capture(self._output))
        operator.output.seal()
        operator.side_outputs = _SideOutputs(self._side)
        self._opened = False
        self._closed = False
        self._checkpoints = itertools.count(1)
        self._parallelism = parallelism
        self._subtask = subtask_index

    def _run(self, coro: Coroutine[Any, Any, R]) -> R:
        if not self._opened:
            self._opened = True
            self._loop.run_until_complete(self.operator.open())
        result = self._loop.run_until_complete(coro)
        while self._control:
            self._loop.run_until_complete(self._control.pop(0)())
        return result

    def open(self) -> None:
        """Open the operator (done automatically by the first call that needs it)."""
        self._run(asyncio.sleep(0))

    # -- snapshots ---------------------------------------------------------

    def snapshot(self) -> OperatorSnapshot:
        """Snapshot the operator as a checkpoint would (keyed state, timers, operator
        state), into a checkpoint written to disk."""
        checkpoint_id = next(self._checkpoints)
        taken = OperatorSnapshot(checkpoint_id)
        op = self.operator
        self._run(op.prepare_snapshot_pre_barrier(checkpoint_id))
        state = op.snapshot_state(checkpoint_id)
        try:
            parts = self._run(
                write_subtask_snapshot(taken.path, self._subtask, [(_UID, state)], PICKLE)
            )
        finally:
            if state is not None:
                op.snapshot_finished(checkpoint_id)
        operators: dict[str, dict[str, Any]] = {}
        for uid, part in parts.items():
            merge_subtask_part(operators, uid, part, self._parallelism)
        write_metadata_atomically(
            taken.path, metadata_for("test", checkpoint_id, "checkpoint", operators)
        )
        return taken

    def restore(self, snapshot: OperatorSnapshot) -> None:
        """Start from ``snapshot`` (of this or another harness); call before any input."""
        if self._opened:
            raise RuntimeError("restore() must come before the operator is opened")
        checkpoint = CompletedCheckpoint.load(snapshot.path)
        view = RestoreView(checkpoint, _UID, self._subtask, self._parallelism, PICKLE)
        self._loop.run_until_complete(self.operator.initialize_state(view))

    # -- input -------------------------------------------------------------

    def process_watermark(self, timestamp: int) -> None:
        """Event time advances to ``timestamp``: due event-time timers and windows fire."""
        self._run(self.operator.process_watermark(int(timestamp)))

    def set_processing_time(self, timestamp: int) -> None:
        """Move the processing-time clock to ``timestamp`` ms; due timers fire."""
        self._run(self.clock.advance_to(int(timestamp)))

    def end_input(self) -> None:
        """The final watermark and end of input, as at the end of a bounded job."""
        from flowactors.time import MAX_WATERMARK

        self._run(self.operator.process_watermark(MAX_WATERMARK))
        self._run(self.operator.finish())

    # -- output ------------------------------------------------------------

    def get_output(self) -> list[StreamRecord | Watermark]:
        """Records and watermarks emitted so far, in order."""
        return list(self._output)

    def extract_output_values(self) -> list[Any]:
        """Just the values of the emitted records, in order."""
        return [e.value for e in self._output if isinstance(e, StreamRecord)]

    def extract_output_records(self) -> list[StreamRecord]:
        return [e for e in self._output if isinstance(e, StreamRecord)]

    def get_side_output(self, tag: Any) -> list[Any]:
        """Values sent to side output ``tag``."""
        return [e.value for e in self._side.get(tag, []) if isinstance(e, StreamRecord)]

    def get_side_output_records(self, tag: Any) -> list[StreamRecord]:
        """Records (with their timestamps) sent to side output ``tag``."""
        return [e for e in self._side.get(tag, []) if isinstance(e, StreamRecord)]

    def clear_output(self) -> None:
        self._output.clear()
        for records in self._side.values():
            records.clear()

    # -- internals a test may count ----------------------------------------

    def _keyed(self) -> KeyedOperator:
        if not isinstance(self.operator, KeyedOperator):
            raise TypeError("this operator has no keyed state or timers")
        return self.operator

    def num_event_time_timers(self) -> int:
        return len(self._keyed().timers.event)

    def num_processing_time_timers(self) -> int:
        return len(self._keyed().timers.processing)

    def num_keyed_state_entries(self) -> int:
        """Entries over all keyed state of the operator (windows' contents included)."""
        return int(self._keyed().backend.num_entries())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._opened:
            self._loop.run_until_complete(self.operator.close())
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OneInputStreamOperatorTestHarness(_Harness):
    """For a ``ProcessFunction`` (or any one-input operator)."""

    def __init__(self, function_or_operator: Any, **kwargs: Any) -> None:
        op = (
            function_or_operator
            if isinstance(function_or_operator, StreamOperator)
            else ProcessOperator(function_or_operator)
        )
        super().__init__(op, **kwargs)

    def process_element(self, value: Any, timestamp: int | None = None) -> None:
        self._run(self.operator.process_batch([value], None if timestamp is None else [timestamp]))

    def process_elements(
        self, values: list[Any], timestamps: list[int | None] | None = None
    ) -> None:
        self._run(self.operator.process_batch(list(values), timestamps))


class KeyedOneInputStreamOperatorTestHarness(OneInputStreamOperatorTestHarness):
    """For a ``KeyedProcessFunction`` keyed by ``key_selector`` (or a keyed operator)."""

    def __init__(
        self, function_or_operator: Any, key_selector: Callable[[Any], Any], **kwargs: Any
    ) -> None:
        op = (
            function_or_operator
            if isinstance(function_or_operator, StreamOperator)
            else KeyedProcessOperator(function_or_operator, key_selector)
        )
        super().__init__(op, **kwargs)


class KeyedTwoInputStreamOperatorTestHarness(_Harness):
    """For a ``KeyedCoProcessFunction`` or a ``CoFlatMapFunction`` on keyed connected
    streams: feed ``process_element1`` / ``process_element2``."""

    def __init__(
        self,
        function_or_operator: Any,
        key_selector_1: Callable[[Any], Any] | None = None,
        key_selector_2: Callable[[Any], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(function_or_operator, StreamOperator):
            op = function_or_operator
        elif key_selector_1 is None or key_selector_2 is None:
            raise TypeError("a function needs both key selectors")
        else:
            op = CoOperator(CO_PROCESS, function_or_operator, (key_selector_1, key_selector_2))
        super().__init__(op, **kwargs)
        self._valve = WatermarkValve([0, 1])

    def process_element1(self, value: Any, timestamp: int | None = None) -> None:
        self._run(self.operator.process_batch([value], None if timestamp is None else [timestamp]))

    def process_element2(self, value: Any, timestamp: int | None = None) -> None:
        second = self.operator.process_batch2  # type: ignore[attr-defined]
        self._run(second([value], None if timestamp is None else [timestamp]))

    def process_watermark1(self, timestamp: int) -> None:
        """The first input's watermark; the operator sees the minimum of both inputs."""
        self._input_watermark(0, timestamp)

    def process_watermark2(self, timestamp: int) -> None:
        self._input_watermark(1, timestamp)

    def process_watermark_status1(self, idle: bool) -> None:
        """The first input becomes idle (it holds no time back) or active again."""
        self._input_status(0, idle)

    def process_watermark_status2(self, idle: bool) -> None:
        self._input_status(1, idle)

    def _input_watermark(self, side: int, timestamp: int) -> None:
        self._valve.set_watermark(side, int(timestamp))
        self._advance()

    def _input_status(self, side: int, idle: bool) -> None:
        self._valve.set_idle(side, idle)
        self._advance()

    def _advance(self) -> None:
        watermark, idle = self._valve.advance()
        if idle is not None:
            self._run(self.operator.process_watermark_status(idle))
        if watermark is not None:
            self._run(self.operator.process_watermark(watermark))


class WindowOperatorTestHarness(KeyedOneInputStreamOperatorTestHarness):
    """A keyed window operator: give exactly one of ``reduce``, ``aggregate`` or ``process``
    (with ``window_fn`` for the first two, as on ``WindowedStream``), and optionally a
    ``trigger``, an ``evictor``, ``allowed_lateness`` and a ``late_data`` tag."""

    def __init__(
        self,
        assigner: WindowAssigner,
        key_selector: Callable[[Any], Any],
        *,
        reduce: Any = None,
        aggregate: Any = None,
        process: Any = None,
        window_fn: Any = None,
        trigger: Trigger | None = None,
        evictor: Evictor | None = None,
        allowed_lateness: timedelta | int = 0,
        late_data: Any = None,
        **kwargs: Any,
    ) -> None:
        if sum(f is not None for f in (reduce, aggregate, process)) != 1:
            raise ValueError("give exactly one of reduce=, aggregate= or process=")
        contents: WindowContents
        if reduce is not None:
            contents = ReduceContents(reduce)
        elif aggregate is not None:
            contents = AggregateContents(aggregate)
        else:
            contents, window_fn = ListContents(), process
        if evictor is not None:
            contents = EvictingContents(contents, evictor)
        op = WindowOperator(
            key_selector,
            assigner,
            trigger,
            contents,
            window_fn,
            to_millis(allowed_lateness),
            late_data,
            keyed=True,
        )
        super().__init__(op, key_selector, **kwargs)

    def num_event_time_timers(self, window: Any = None) -> int:
        """Event-time timers, or only those of ``window`` (trigger and cleanup timers)."""
        if window is None:
            return super().num_event_time_timers()
        return sum(1 for _, (_, w) in self._keyed().timers.event.live if w == window)

    def num_processing_time_timers(self, window: Any = None) -> int:
        """Processing-time timers, or only those of ``window``."""
        if window is None:
            return super().num_processing_time_timers()
        return sum(1 for _, (_, w) in self._keyed().timers.processing.live if w == window)


__all__ = [
    "KeyedOneInputStreamOperatorTestHarness",
    "KeyedTwoInputStreamOperatorTestHarness",
    "ManualClock",
    "OneInputStreamOperatorTestHarness",
    "OperatorSnapshot",
    "StreamRecord",
    "Watermark",
    "WindowOperatorTestHarness",
]
