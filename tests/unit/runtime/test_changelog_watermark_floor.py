"""A reader resuming a split where an earlier reader left event time (a moved scale-out
task): the watermark it emits is a floor under its source's watermark generators."""

from __future__ import annotations

from typing import Any

from flowactors import KeyedProcessFunction, StreamExecutionEnvironment, WatermarkStrategy
from flowactors.spi import InputStatus, ReaderOutput, Source, SourceReader, SourceReaderContext

FLOOR = 1000


class ResumingReader(SourceReader[Any]):
    """Emits ``FLOOR`` first, then records whose timestamps lie below and above it."""

    def __init__(self) -> None:
        self.polls = 0

    async def poll_next(self, output: ReaderOutput[Any]) -> InputStatus:
        self.polls += 1
        if self.polls == 1:
            await output.emit_watermark(FLOOR)
            return InputStatus.MORE_AVAILABLE
        await output.collect_batch(["a", "b", "c"], [500, 1200, 900], split_id="p0")
        return InputStatus.END_OF_INPUT


class ResumingSource(Source[Any]):
    def create_reader(self, context: SourceReaderContext) -> SourceReader[Any]:
        return ResumingReader()


class ObserveWatermark(KeyedProcessFunction[int, str, tuple[str, int]]):
    def process_element(self, value: str, ctx: Any, out: Any) -> None:
        out.collect((value, ctx.current_watermark()))


async def test_a_reader_watermark_is_a_floor_under_the_generated_ones() -> None:
    env = StreamExecutionEnvironment(parallelism=1)
    result = await (
        env.from_source(ResumingSource(), WatermarkStrategy.for_bounded_out_of_orderness(0), "in")
        .key_by(lambda v: 0)
        .process(ObserveWatermark())
        .execute_and_collect()
    )
    # every record meets the floor, none a fresh generator's lower watermark
    assert result == [("a", FLOOR), ("b", FLOOR), ("c", FLOOR)]
