"""Turning a watermark strategy into timestamps and watermarks on a stream.

:class:`SplitWatermarks` runs one generator per split (a Kafka partition, a
file share) and combines them: the combined watermark is the minimum over the
splits that are not idle, it never goes back, and when every split is idle the
whole output is idle (so downstream operators stop waiting for it).

It is used in two places: inside a source (``from_source(source, strategy)``,
watermarks per split as Flink's FLIP-27 sources do) and as the operator behind
``assign_timestamps_and_watermarks`` (one split per subtask; watermarks that
arrive from upstream are dropped, except the final one at the end of input).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flowactors.runtime.operators import StreamOperator, Timestamps, Values
from flowactors.runtime.valve import WatermarkValve
from flowactors.time import MAX_WATERMARK
from flowactors.time.clock import Cancellable
from flowactors.time.watermarks import WatermarkGenerator, WatermarkOutput, WatermarkStrategy


class SplitWatermarks:
    def __init__(self, strategy: WatermarkStrategy[Any], clock: Any) -> None:
        self.strategy = strategy
        self.clock = clock
        self.assigner = strategy.timestamp_assigner
        self.splits: dict[Any, tuple[WatermarkGenerator[Any], WatermarkOutput]] = {}
        self.valve = WatermarkValve()

    def _split(self, split_id: Any) -> tuple[WatermarkGenerator[Any], WatermarkOutput]:
        entry = self.splits.get(split_id)
        if entry is None:
            entry = self.splits[split_id] = (
                self.strategy.create_watermark_generator(self.clock),
                WatermarkOutput(),
            )
            self.valve.add_input(split_id)
        return entry

    def assign(self, values: Values, timestamps: Timestamps) -> list[int | None] | None:
        assigner = self.assigner
        if assigner is None:
            return timestamps
        if timestamps is None:
            return [assigner(v, None) for v in values]
        return [assigner(v, t) for v, t in zip(values, timestamps)]

    def segments(
        self, split_id: Any, values: Values, timestamps: list[int | None] | None
    ) -> Iterator[tuple[int, int]]:
        """Feed a batch to its split's generator; yield ``(lo, hi)`` slices to emit.

        After each slice the caller emits what the generators decided, so a
        watermark emitted in ``on_event`` follows its event before the next one.
        A generator that never emits on events sees the batch at once (one slice).
        """
        generator, output = self._split(split_id)
        n = len(values)
        if timestamps is None:
            yield 0, n
            return
        if not generator.emits_on_event:
            generator.on_batch(values, timestamps, output)
            yield 0, n
            return
        on_event = generator.on_event
        lo = 0
        for i, (value, ts) in enumerate(zip(values, timestamps)):
            if ts is None:
                continue
            version = output.version
            on_event(value, ts, output)
            if output.version != version and i + 1 < n:
                yield lo, i + 1
                lo = i + 1
        yield lo, n

    def on_periodic(self) -> None:
        for generator, output in self.splits.values():
            generator.on_periodic_emit(output)

    def advance(self) -> tuple[int | None, bool | None]:
        """``(new watermark or None, new idle status or None)`` after generators emitted."""
        valve = self.valve
        changed = False
        for split_id, (_, output) in self.splits.items():
            if output.changed:
                output.changed = False
                changed = True
                if output.idle:
                    valve.set_idle(split_id, True)
                else:
                    valve.set_watermark(split_id, output.watermark)
        return valve.advance() if changed else (None, None)


async def emit_progress(operator: StreamOperator, tracker: SplitWatermarks) -> None:
    """Send what the tracker's generators decided downstream (status first, then time)."""
    watermark, idle = tracker.advance()
    if idle is not None:
        await operator.output.emit_watermark_status(idle)
    if watermark is not None:
        await StreamOperator.process_watermark(operator, watermark)


async def emit_segments(
    operator: StreamOperator,
    tracker: SplitWatermarks,
    split_id: Any,
    values: Values,
    timestamps: list[int | None] | None,
) -> None:
    """Emit a batch, with the watermarks its events cause in between."""
    segments = tracker.segments(split_id, values, timestamps)
    while True:
        try:
            lo, hi = next(segments)
        except StopIteration:
            break
        except Exception as exc:  # the user's generator raised
            raise operator.failure(exc) from exc
        if lo == 0 and hi == len(values):
            if values:
                await operator.output.emit(values, timestamps)
        elif hi > lo:
            await operator.output.emit(
                values[lo:hi], None if timestamps is None else timestamps[lo:hi]
            )
        await emit_progress(operator, tracker)


class TimestampsAndWatermarksOperator(StreamOperator):
    """``assign_timestamps_and_watermarks(strategy)``: timestamps per record, watermarks
    from the strategy's generator (periodically, on processing time)."""

    def __init__(self, strategy: WatermarkStrategy[Any]) -> None:
        super().__init__()
        self.strategy = strategy
        self.timer: Cancellable | None = None

    async def open(self) -> None:
        self.time = self.ctx.processing_time
        self.tracker = SplitWatermarks(self.strategy, self.time.now)
        self.interval = self.ctx.config.auto_watermark_interval_ms
        self.tracker._split(None)
        if self.interval > 0:
            self.timer = self.time.schedule(self.time.now() + self.interval, self._periodic)

    async def _periodic(self, timestamp: int) -> None:
        self.tracker.on_periodic()
        await emit_progress(self, self.tracker)
        self.timer = self.time.schedule(self.time.now() + self.interval, self._periodic)

    async def process_batch(
        self, values: Values, timestamps: Timestamps, keys: Values | None = None
    ) -> None:
        try:
            stamps = self.tracker.assign(values, timestamps)
        except Exception as exc:
            raise self.failure(exc) from exc
        await emit_segments(self, self.tracker, None, values, stamps)

    async def process_watermark(self, timestamp: int) -> None:
        # Upstream watermarks are replaced by ours, except the end of event time.
        if timestamp == MAX_WATERMARK:
            await super().process_watermark(timestamp)

    async def process_watermark_status(self, idle: bool) -> None:
        pass

    async def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
