"""Built-in sources: collections, generators, text files and JSON-lines files.

They are written against :mod:`flowactors.spi` like any connector.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import aiofiles
import orjson

from flowactors.errors import MalformedRecordError
from flowactors.runtime.operators import is_async_callable
from flowactors.spi import (
    Boundedness,
    InputStatus,
    ReaderOutput,
    Source,
    SourceReader,
    SourceReaderContext,
)

T = TypeVar("T")

MORE = InputStatus.MORE_AVAILABLE
END = InputStatus.END_OF_INPUT
NOTHING = InputStatus.NOTHING_AVAILABLE


@dataclass(frozen=True)
class MalformedRecord:
    """A record a source could not decode, sent to a side output instead of failing the job.

    ``source`` names the file (or topic), ``position`` the line (or partition
    and offset), ``raw`` the undecoded input and ``error`` what was wrong.
    """

    source: str
    position: Any
    raw: bytes
    error: str


# -- collection --------------------------------------------------------------


class CollectionSource(Source[T]):
    """The elements of an iterable, in order, from one subtask."""

    max_parallelism = 1

    def __init__(self, elements: Iterable[T]) -> None:
        self.elements = elements

    def create_reader(self, context: SourceReaderContext) -> SourceReader[T]:
        start = sum(context.restored_state or [])
        return _CollectionReader(self.elements, context.batch_size, start)


class _CollectionReader(SourceReader[T]):
    """Its checkpointed state is the number of elements emitted."""

    def __init__(self, elements: Iterable[T], batch_size: int, start: int) -> None:
        self.batch_size = batch_size
        self.list: list[T] | None = elements if isinstance(elements, list) else None
        self.iter: Iterator[T] | None = None
        if self.list is None:
            self.iter = iter(elements)
            for _ in islice(self.iter, start):
                pass
        self.pos = start

    async def poll_next(self, output: ReaderOutput[T]) -> InputStatus:
        if self.list is not None:
            batch = self.list[self.pos : self.pos + self.batch_size]
            done = self.pos + len(batch) >= len(self.list)
        else:
            assert self.iter is not None
            batch = list(islice(self.iter, self.batch_size))
            done = len(batch) < self.batch_size
        self.pos += len(batch)
        if batch:
            await output.collect_batch(batch)
        return END if done else MORE

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        return [self.pos]


# -- generator ---------------------------------------------------------------


class GeneratorSource(Source[T]):
    """``fn(index)`` for ``index`` in ``0..count-1`` (or forever), optionally at ``rate``/s.

    Parallel: with parallelism *p*, subtask *s* generates a contiguous share of
    the indices (or, when endless, every *p*-th index from *s*), and the rate is
    split evenly between subtasks.
    """

    def __init__(
        self,
        fn: Callable[[int], T] | Callable[[int], Awaitable[T]],
        count: int | None = None,
        rate: float | None = None,
    ) -> None:
        if count is not None and count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be > 0 records/s, got {rate}")
        self.fn = fn
        self.count = count
        self.rate = rate
        self.boundedness = (
            Boundedness.BOUNDED if count is not None else Boundedness.CONTINUOUS_UNBOUNDED
        )

    def create_reader(self, context: SourceReaderContext) -> SourceReader[T]:
        p, s = context.parallelism, context.subtask_index
        splits: list[list[int | None]]
        if context.restored_state is not None:
            splits = [list(split) for split in context.restored_state]
        elif self.count is not None:
            splits = [[s * self.count // p, (s + 1) * self.count // p, 1]]
        else:
            splits = [[s, None, p]]
        rate = self.rate / p if self.rate is not None else None
        return _GeneratorReader(self.fn, splits, rate, context.batch_size)


def _exhausted(split: list[int | None]) -> bool:
    start, stop, _ = split
    return stop is not None and start is not None and start >= stop


class _GeneratorReader(SourceReader[T]):
    """Generates indices from its splits ``[next, stop or None, step]``; those are its state."""

    def __init__(
        self,
        fn: Callable[[int], Any],
        splits: list[list[int | None]],
        rate: float | None,
        batch_size: int,
    ) -> None:
        self.fn = fn
        self.is_async = is_async_callable(fn)
        self.splits = [split for split in splits if not _exhausted(split)]
        self.rate = rate
        self.batch_size = batch_size
        self.emitted = 0
        self.started = 0.0

    async def start(self) -> None:
        self.started = asyncio.get_running_loop().time()

    def _allowed(self) -> int:
        if self.rate is None:
            return self.batch_size
        elapsed = asyncio.get_running_loop().time() - self.started
        return min(self.batch_size, int(elapsed * self.rate) + 1 - self.emitted)

    def _take(self, n: int) -> list[int]:
        split = self.splits[0]
        start, stop, step = split
        assert start is not None and step is not None
        end = start + n * step if stop is None else min(start + n * step, stop)
        indices = list(range(start, end, step))
        split[0] = start + len(indices) * step
        if _exhausted(split):
            self.splits.pop(0)
        return indices

    async def poll_next(self, output: ReaderOutput[T]) -> InputStatus:
        if not self.splits:
            return END
        n = self._allowed()
        if n <= 0:
            return NOTHING
        idx = self._take(n)
        if self.is_async:
            fn = self.fn
            batch = [await fn(i) for i in idx]
        else:
            batch = list(map(self.fn, idx))
        self.emitted += len(idx)
        if batch:
            await output.collect_batch(batch)
        return MORE if self.splits else END

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        return [list(split) for split in self.splits]

    async def is_available(self) -> None:
        assert self.rate is not None
        due = self.started + (self.emitted / self.rate)
        await asyncio.sleep(max(0.0, due - asyncio.get_running_loop().time()))


# -- files -------------------------------------------------------------------


def _list_files(path: str | os.PathLike[str]) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        return sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
    if not p.exists():
        raise FileNotFoundError(f"no such file or directory: {str(p)!r}")
    return [p]


class _LineReader(SourceReader[T]):
    """Reads files in large chunks and hands out complete lines with their numbers.

    Its state is, per file not yet finished, ``(path, byte offset, line number)``
    of the first line not emitted yet.
    """

    chunk_size = 1 << 20

    def __init__(self, files: list[tuple[str, int, int]], batch_size: int) -> None:
        self.files: list[list[Any]] = [list(f) for f in files]  # [path, offset, line_no]
        self.batch_size = batch_size
        self.handle: Any = None
        self.carry = b""
        self.pending: list[bytes] = []
        self.pending_pos = 0
        self.eof = True

    @property
    def current(self) -> str:
        return str(self.files[0][0])

    async def _next_lines(self) -> tuple[int, list[bytes]] | None:
        """Up to ``batch_size`` lines of the current file and the number of the first."""
        while True:
            if self.pending_pos < len(self.pending):
                lines = self.pending[self.pending_pos : self.pending_pos + self.batch_size]
                state = self.files[0]
                first = state[2] + 1
                self.pending_pos += len(lines)
                state[1] += sum(map(len, lines)) + len(lines)  # each line and its newline
                state[2] += len(lines)
                return first, lines
            if self.eof:
                if self.handle is not None:
                    await self.handle.close()
                    self.handle = None
                    self.files.pop(0)
                if not self.files:
                    return None
                path, offset, _ = self.files[0]
                self.handle = await aiofiles.open(path, "rb")
                if offset:
                    await self.handle.seek(offset)
                self.eof = False
                self.carry = b""
            chunk = await self.handle.read(self.chunk_size)
            if not chunk:
                self.eof = True
                self.pending = [self.carry] if self.carry else []
                self.carry = b""
            else:
                parts = (self.carry + chunk).split(b"\n")
                self.carry = parts.pop()
                self.pending = parts
            self.pending_pos = 0

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        return [tuple(f) for f in self.files]

    async def close(self) -> None:
        if self.handle is not None:
            await self.handle.close()
            self.handle = None


def _file_splits(files: list[Path], context: SourceReaderContext) -> list[tuple[str, int, int]]:
    if context.restored_state is not None:
        return [(str(f[0]), int(f[1]), int(f[2])) for f in context.restored_state]
    return [(str(f), 0, 0) for f in files[context.subtask_index :: context.parallelism]]


def _strip_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


class TextFileSource(Source[str]):
    """Lines of a file, or of every file in a directory (one file per subtask at a time)."""

    def __init__(self, path: str | os.PathLike[str], encoding: str = "utf-8") -> None:
        self.path = path
        self.encoding = encoding
        self.files = _list_files(path)

    def create_reader(self, context: SourceReaderContext) -> SourceReader[str]:
        return _TextReader(_file_splits(self.files, context), context.batch_size, self.encoding)


class _TextReader(_LineReader[str]):
    def __init__(self, files: list[tuple[str, int, int]], batch_size: int, encoding: str) -> None:
        super().__init__(files, batch_size)
        self.encoding = encoding

    async def poll_next(self, output: ReaderOutput[str]) -> InputStatus:
        got = await self._next_lines()
        if got is None:
            return END
        first, lines = got
        try:
            batch = [_strip_cr(line).decode(self.encoding) for line in lines]
        except UnicodeDecodeError as exc:
            for i, line in enumerate(lines):
                try:
                    line.decode(self.encoding)
                except UnicodeDecodeError:
                    raise MalformedRecordError(
                        f"{self.current}:{first + i}: not valid {self.encoding}: {exc.reason}",
                        source=self.current,
                        position=first + i,
                        raw=line,
                    ) from exc
            raise
        await output.collect_batch(batch)
        return MORE


class JsonLinesSource(Source[Any]):
    """One JSON value per line (blank lines skipped), decoded with orjson.

    A line that is not valid JSON fails the job with a
    :class:`~flowactors.errors.MalformedRecordError` naming the file and the
    line — or, with ``bad_lines=OutputTag(...)``, goes to that side output as a
    :class:`MalformedRecord` and the job goes on.
    """

    def __init__(self, path: str | os.PathLike[str], bad_lines: Any = None) -> None:
        self.path = path
        self.bad_lines = bad_lines
        self.files = _list_files(path)

    def create_reader(self, context: SourceReaderContext) -> SourceReader[Any]:
        splits = _file_splits(self.files, context)
        return _JsonLinesReader(splits, context.batch_size, self.bad_lines)


class _JsonLinesReader(_LineReader[Any]):
    def __init__(self, files: list[tuple[str, int, int]], batch_size: int, bad_lines: Any) -> None:
        super().__init__(files, batch_size)
        self.bad_lines = bad_lines

    async def poll_next(self, output: ReaderOutput[Any]) -> InputStatus:
        got = await self._next_lines()
        if got is None:
            return END
        first, lines = got
        loads = orjson.loads
        try:
            batch = [loads(line) for line in lines if line.strip()]
        except orjson.JSONDecodeError:
            batch = self._decode_carefully(first, lines, output)
        if batch:
            await output.collect_batch(batch)
        return MORE

    def _decode_carefully(
        self, first: int, lines: list[bytes], output: ReaderOutput[Any]
    ) -> list[Any]:
        batch = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                batch.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                where = f"{self.current}:{first + i}"
                if self.bad_lines is None:
                    raise MalformedRecordError(
                        f"{where}: malformed JSON: {exc}",
                        source=self.current,
                        position=first + i,
                        raw=line,
                    ) from None
                output.emit_side_output(
                    self.bad_lines, MalformedRecord(self.current, first + i, line, str(exc))
                )
        return batch
