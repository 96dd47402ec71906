"""Built-in sinks: print, text files, and the in-process collectors behind
``execute_and_collect`` / ``execute_and_stream``."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any, TextIO, TypeVar

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
    """Writes ``str(record)`` lines into part files of a directory, exactly once.

    Records go to a hidden in-progress file (``.part-...inprogress``) that is
    renamed to its final name (``part-...``) only when nothing can take it back:

    - without checkpoints, when the input ends (``part-<subtask>-<n>``);
    - with checkpoints, the file is closed at each barrier and renamed when that
      checkpoint completes (``part-<subtask>-<run>-<n>``). After a failure, the
      restored checkpoint's closed files are renamed and in-progress files of
      earlier runs are deleted, so the directory's finished files hold every
      record exactly once.
    """

    commits_on_checkpoints = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        return _TextFileWriter(self.path, context)


class _TextFileWriter(SinkWriter[Any]):
    def __init__(self, directory: Path, context: SinkWriterContext) -> None:
        self.directory = directory
        self.context = context
        self.subtask = context.subtask_index
        self.handle: Any = None
        self.counter = 0
        #: (checkpoint id, in-progress path, final path) of closed files awaiting commit
        self.pending: list[tuple[int, str, str]] = []

    async def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        ctx = self.context
        restored = ctx.restored_union_state
        if restored is not None:
            for _, in_progress, final in restored:
                _commit(Path(in_progress), Path(final))
        if ctx.checkpointing and ctx.subtask_index == 0 and (restored is not None or ctx.attempt):
            # What earlier runs left in progress and no restored checkpoint covers
            # was written after that checkpoint: it will be written again.
            self._delete_strays({entry[1] for entry in restored or []})

    def _delete_strays(self, keep: set[str]) -> None:
        """In-progress files of earlier runs that no restored checkpoint covers."""
        mine = f".{self.context.run_id}."
        for path in self.directory.glob(".part-*.inprogress"):
            if str(path) not in keep and mine not in path.name:
                path.unlink(missing_ok=True)

    def _names(self) -> tuple[Path, Path]:
        ctx = self.context
        while True:
            if ctx.checkpointing:
                stem = f"part-{self.subtask}-{ctx.run_id}-{self.counter}"
                in_progress = (
                    self.directory / f".part-{self.subtask}.{ctx.run_id}.{self.counter}.inprogress"
                )
            else:
                stem = f"part-{self.subtask}-{self.counter}"
                in_progress = self.directory / f".{stem}.inprogress"
            self.counter += 1
            final = self.directory / stem
            if not final.exists() and not in_progress.exists():
                return in_progress, final

    async def write(self, values: list[Any], timestamps: list[int | None] | None) -> None:
        if self.handle is None:
            self.in_progress, self.final = self._names()
            # A plain buffered file: writes land in the page cache without blocking the
            # loop noticeably, and no cancellation can leave it open (close() closes it).
            self.handle = _open_text(self.in_progress)
        self.handle.write("".join(f"{v}\n" for v in values))

    async def _close_current(self) -> tuple[str, str] | None:
        handle, self.handle = self.handle, None
        if handle is None:
            return None
        # Shielded: a cancellation must not cancel the queued job, or nothing closes it.
        await asyncio.shield(asyncio.to_thread(_fsync_and_close, handle))
        return str(self.in_progress), str(self.final)

    async def prepare_commit(self, checkpoint_id: int) -> None:
        closed = await self._close_current()
        if closed is not None:
            self.pending.append((checkpoint_id, *closed))

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        return list(self.pending)

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        done = [p for p in self.pending if p[0] <= checkpoint_id]
        self.pending = [p for p in self.pending if p[0] > checkpoint_id]
        for _, in_progress, final in done:
            _commit(Path(in_progress), Path(final))

    async def flush(self, end_of_input: bool) -> None:
        if self.handle is not None:
            self.handle.flush()
        if end_of_input:
            # The input is complete: nothing can be replayed, everything is final.
            closed = await self._close_current()
            for _, in_progress, final in self.pending:
                _commit(Path(in_progress), Path(final))
            self.pending.clear()
            if closed is not None:
                _commit(Path(closed[0]), Path(closed[1]))

    async def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def _open_text(path: Path) -> Any:
    return open(path, "w", encoding="utf-8")


def _fsync_and_close(handle: Any) -> None:
    try:
        handle.flush()
        os.fsync(handle.fileno())
    finally:
        handle.close()


def _commit(in_progress: Path, final: Path) -> None:
    """Rename into place; idempotent (a file already committed stays as it is)."""
    try:
        os.replace(in_progress, final)
    except FileNotFoundError:
        if not final.exists():
            raise


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
