"""Built-in sinks: print, text files, and the in-process collectors behind
``execute_and_collect`` / ``execute_and_stream``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, TextIO, TypeVar

import aiofiles

from flowactors.runtime.mailbox import Mailbox
from flowactors.spi import Sink, SinkWriter, SinkWriterContext

T = TypeVar("T")


class PrintSink(Sink[Any]):
    """Writes ``str(record)`` lines to stdout (or stderr), prefixed ``"n> "`` when parallel."""

    def __init__(self, prefix: str | None = None, stderr: bool = False) -> None:
        self.prefix = prefix
        self.stderr = stderr

    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        parts = []
        if self.prefix:
            parts.append(self.prefix)
        if context.parallelism > 1:
            parts.append(str(context.subtask_index + 1))
        prefix = ":".join(parts) + "> " if parts else ""
        return _PrintWriter(prefix, sys.stderr if self.stderr else sys.stdout)


class _PrintWriter(SinkWriter[Any]):
    def __init__(self, prefix: str, stream: TextIO) -> None:
        self.prefix = prefix
        self.stream = stream

    async def write(self, values: list[Any], timestamps: list[int | None] | None) -> None:
        p = self.prefix
        self.stream.write("".join(f"{p}{v}\n" for v in values))

    async def flush(self, end_of_input: bool) -> None:
        self.stream.flush()


class TextFileSink(Sink[Any]):
    """Writes ``str(record)`` lines into part files of a directory.

    Each subtask writes ``.part-<subtask>-<n>.inprogress`` and renames it to
    ``part-<subtask>-<n>`` when its input ends, so a reader of the directory
    never sees a half-written part file under its final name.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        return _TextFileWriter(self.path, context.subtask_index)


class _TextFileWriter(SinkWriter[Any]):
    def __init__(self, directory: Path, subtask: int) -> None:
        self.directory = directory
        self.subtask = subtask
        self.handle: Any = None

    async def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        n = 0
        while (self.directory / f"part-{self.subtask}-{n}").exists():
            n += 1
        self.final = self.directory / f"part-{self.subtask}-{n}"
        self.in_progress = self.directory / f".part-{self.subtask}-{n}.inprogress"
        self.handle = await aiofiles.open(self.in_progress, "w", encoding="utf-8")

    async def write(self, values: list[Any], timestamps: list[int | None] | None) -> None:
        await self.handle.write("".join(f"{v}\n" for v in values))

    async def flush(self, end_of_input: bool) -> None:
        await self.handle.flush()
        if end_of_input:
            await self.handle.close()
            self.handle = None
            os.replace(self.in_progress, self.final)

    async def close(self) -> None:
        if self.handle is not None:
            await self.handle.close()
            self.handle = None


class CollectSink(Sink[T]):
    """Appends every record to a list (for ``execute_and_collect``)."""

    max_parallelism = 1

    def __init__(self) -> None:
        self.results: list[T] = []

    def create_writer(self, context: SinkWriterContext) -> SinkWriter[T]:
        return _CollectWriter(self.results)


class _CollectWriter(SinkWriter[T]):
    def __init__(self, results: list[T]) -> None:
        self.results = results

    async def write(self, values: list[T], timestamps: list[int | None] | None) -> None:
        self.results.extend(values)


class StreamSink(Sink[T]):
    """Hands batches to a bounded mailbox that an ``async for`` reads (``execute_and_stream``)."""

    max_parallelism = 1

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    def create_writer(self, context: SinkWriterContext) -> SinkWriter[T]:
        return _StreamWriter(self.mailbox)


class _StreamWriter(SinkWriter[T]):
    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def write(self, values: list[T], timestamps: list[int | None] | None) -> None:
        await self.mailbox.put(0, values, len(values))
