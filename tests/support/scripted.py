"""A source that follows a script, and punctuated watermarks: event time under test control."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, ClassVar

from flowactors import ProcessFunction, WatermarkGenerator, WatermarkOutput, WatermarkStrategy
from flowactors.spi import InputStatus, ReaderOutput, Source, SourceReader, SourceReaderContext

__all__ = [
    "Emit",
    "EveryEvent",
    "Mark",
    "Scripted",
    "Sleep",
    "Stamp",
    "one_by_one",
    "per_key",
    "punctuated",
]


@dataclass
class Emit:
    """One ``collect_batch`` call: ``values`` with their ``timestamps`` of ``split``."""

    values: list[Any]
    timestamps: list[int | None] | None = None
    split: Any = None


@dataclass
class Sleep:
    """Nothing available for ``seconds`` (the task keeps emitting periodic watermarks)."""

    seconds: float


@dataclass
class Mark:
    """Append ``label`` to the source's log when the script gets here."""

    label: str


@dataclass
class Scripted(Source[Any]):
    """A non-parallel source that plays ``steps`` in order, then ends."""

    steps: list[Emit | Sleep | Mark]
    log: list[str] = field(default_factory=list)
    max_parallelism: ClassVar[int | None] = 1

    def create_reader(self, context: SourceReaderContext) -> SourceReader[Any]:
        return _ScriptedReader(self)


class _ScriptedReader(SourceReader[Any]):
    def __init__(self, source: Scripted) -> None:
        self.source = source
        self.pos = 0
        self.until = 0.0

    async def poll_next(self, output: ReaderOutput[Any]) -> InputStatus:
        loop = asyncio.get_running_loop()
        if loop.time() < self.until:
            return InputStatus.NOTHING_AVAILABLE
        steps = self.source.steps
        while self.pos < len(steps):
            step = steps[self.pos]
            self.pos += 1
            if isinstance(step, Mark):
                self.source.log.append(step.label)
            elif isinstance(step, Sleep):
                self.until = loop.time() + step.seconds
                return InputStatus.NOTHING_AVAILABLE
            else:
                await output.collect_batch(list(step.values), step.timestamps, split_id=step.split)
                return InputStatus.MORE_AVAILABLE
        return InputStatus.END_OF_INPUT

    async def is_available(self) -> None:
        await asyncio.sleep(max(0.0, self.until - asyncio.get_running_loop().time()))


def one_by_one(records: list[tuple[Any, int]], split: Any = None) -> list[Emit | Sleep | Mark]:
    """Each ``(value, timestamp)`` in a batch of its own."""
    return [Emit([v], [t], split) for v, t in records]


class EveryEvent(WatermarkGenerator[Any]):
    """Punctuated: the watermark is each event's timestamp (``offset`` behind)."""

    def __init__(self, offset: int = 0) -> None:
        self.offset = offset

    def on_event(self, event: Any, timestamp: int, output: WatermarkOutput) -> None:
        output.emit_watermark(timestamp - self.offset)

    def on_periodic_emit(self, output: WatermarkOutput) -> None:
        pass


def punctuated(offset: int = 0) -> WatermarkStrategy[Any]:
    return WatermarkStrategy.for_generator(lambda ctx: EveryEvent(offset))


def per_key(out: list[tuple[Any, ...]]) -> dict[Any, list[tuple[Any, ...]]]:
    d: dict[Any, list[tuple[Any, ...]]] = {}
    for r in out:
        d.setdefault(r[0], []).append(r)
    return d


class Stamp(ProcessFunction[Any, tuple[Any, int | None]]):
    """``(value, timestamp of the record)``."""

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        out.collect((value, ctx.timestamp()))
