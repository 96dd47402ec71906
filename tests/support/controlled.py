"""A source the test feeds while the job runs, and a way to wait until the job is idle.

With a :class:`flowactors.testing.ManualClock` this makes processing time
deterministic without sleeping: feed, :func:`settle`, advance the clock,
:func:`settle`, and so on.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, ClassVar

from flowactors import DataStream, JobClient
from flowactors.api.sinks import CollectSink
from flowactors.spi import InputStatus, ReaderOutput, Source, SourceReader, SourceReaderContext

__all__ = ["Controlled", "collecting", "settle"]


class Controlled(Source[Any]):
    """A non-parallel source: ``feed(values)`` emits a batch, ``end()`` ends the input."""

    max_parallelism: ClassVar[int | None] = 1

    def __init__(self) -> None:
        self.batches: deque[list[Any] | None] = deque()
        self.wakeup = asyncio.Event()

    def feed(self, values: list[Any]) -> None:
        self.batches.append(list(values))
        self.wakeup.set()

    def end(self) -> None:
        self.batches.append(None)
        self.wakeup.set()

    def create_reader(self, context: SourceReaderContext) -> SourceReader[Any]:
        return _ControlledReader(self)


class _ControlledReader(SourceReader[Any]):
    def __init__(self, source: Controlled) -> None:
        self.source = source

    async def poll_next(self, output: ReaderOutput[Any]) -> InputStatus:
        batches = self.source.batches
        if not batches:
            self.source.wakeup.clear()
            return InputStatus.NOTHING_AVAILABLE
        batch = batches.popleft()
        if batch is None:
            return InputStatus.END_OF_INPUT
        await output.collect_batch(batch)
        return InputStatus.MORE_AVAILABLE

    async def is_available(self) -> None:
        await self.source.wakeup.wait()


async def settle(client: JobClient, source: Controlled, turns: int = 5) -> None:
    """Wait until the source emitted everything fed to it and no record is in flight
    (queued in a mailbox or buffered in a writer) for ``turns`` turns of the loop."""
    quiet = 0
    while quiet < turns:
        await asyncio.sleep(0)
        busy = source.batches or client.metrics().in_flight_records
        quiet = 0 if busy else quiet + 1


async def collecting(
    stream: DataStream[Any], job_name: str = "controlled"
) -> tuple[JobClient, list[Any]]:
    """Start the job of ``stream`` and return its client and the list its records land in."""
    sink: CollectSink[Any] = CollectSink()
    stream.sink_to(sink, name="Collect Sink")
    client = await stream._env.execute_async(job_name)
    return client, sink.results
